"""A delivery takes other due rows along with its own: one claim and one "sent" for the batch
(two commits, not two per email), each email still sent at most once where that can be known."""

import datetime
import logging
from contextlib import suppress

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emails import services
from emails import smtp as sending
from emails.models import EmailLog
from emails.tests.helpers import make_due, reload, stuck_in_sending

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _batches(settings):
    settings.EMAIL_SEND_BATCH = 50


def queued(queue, count: int) -> list[EmailLog]:
    rows = [queue(f"user{n}@example.com") for n in range(count)]
    make_due(*rows)
    return rows


def test_a_delivery_sends_its_row_and_the_due_ones_in_two_statements_for_the_batch(smtp, queue):
    first, *_ = queued(queue, 10)

    with CaptureQueriesContext(connection) as queries:
        delivery = services.deliver_email(first.pk)

    assert delivery.status == EmailLog.Status.SENT
    assert len(smtp.received) == 10
    assert set(EmailLog.objects.values_list("status", "attempts")) == {("sent", 1)}
    writes = [q["sql"] for q in queries if q["sql"].lstrip().startswith("UPDATE")]
    assert len(writes) == 3  # its own claim, the others', one "sent" for all ten


def test_a_batch_takes_no_more_than_its_size(smtp, queue, settings):
    settings.EMAIL_SEND_BATCH = 4
    first, *_ = queued(queue, 10)

    services.deliver_email(first.pk)

    assert len(smtp.received) == 4
    assert EmailLog.objects.filter(status=EmailLog.Status.QUEUED).count() == 6


def test_a_temporary_failure_in_a_batch_puts_that_row_back_and_sends_the_rest(
    smtp, queue, monkeypatch
):
    first, refused, last = queued(queue, 3)
    smtp.answer("451 4.3.0 Try again later", to=refused.to_email, times=1)
    handed_over = []
    monkeypatch.setattr(services.outbox, "hand_over", handed_over.append)

    services.deliver_email(first.pk)

    assert reload(refused).status == EmailLog.Status.QUEUED
    assert "451" in reload(refused).last_error
    assert {reload(first).status, reload(last).status} == {EmailLog.Status.SENT}
    # Its own task may have come and gone while the batch held it: it gets another, which
    # comes back when the retry is due.
    assert handed_over == [refused.pk]
    delay = (reload(refused).next_attempt_at - timezone.now()).total_seconds()
    assert delay < services.deliver_email(refused.pk).retry_in <= delay + 1


def test_a_batch_leaves_the_rows_another_worker_holds(smtp, queue):
    first, held = queued(queue, 2)
    stuck_in_sending(held, seconds_ago=1)  # claimed a moment ago: its lease runs

    services.deliver_email(first.pk)

    assert reload(held).status == EmailLog.Status.SENDING
    assert len(smtp.received) == 1


def test_a_batch_takes_neither_failed_rows_nor_rows_waiting_for_their_backoff(smtp, queue):
    first, failed, waiting = queued(queue, 3)
    EmailLog.objects.filter(pk=failed.pk).update(status=EmailLog.Status.FAILED)
    EmailLog.objects.filter(pk=waiting.pk).update(
        next_attempt_at=timezone.now() + datetime.timedelta(minutes=5)
    )

    services.deliver_email(first.pk)

    assert [m["To"] for m in smtp.messages] == [first.to_email]
    assert (reload(failed).status, reload(waiting).status) == ("failed", "queued")
    assert reload(failed).attempts == reload(waiting).attempts == 0


@pytest.mark.parametrize("count", [2, 3])
def test_what_a_batch_has_no_time_left_for_is_handed_back_due_at_once(
    smtp, queue, settings, monkeypatch, count
):
    settings.EMAIL_SEND_BATCH_SECONDS = 0  # no send after the delivery's own
    first, *others = queued(queue, count)
    handed_over = []
    monkeypatch.setattr(services.outbox, "hand_over", handed_over.append)

    assert services.deliver_email(first.pk).status == EmailLog.Status.SENT
    assert sorted(handed_over) == sorted(row.pk for row in others)  # a task each, at once

    assert [m["To"] for m in smtp.messages] == [first.to_email]
    for row in others:
        assert (reload(row).status, reload(row).attempts) == (EmailLog.Status.QUEUED, 0)
    assert len(services.pending_emails()) == len(others)


def test_the_task_of_a_row_a_batch_already_sent_sends_nothing(smtp, queue):
    first, second = queued(queue, 2)
    services.deliver_email(first.pk)

    delivery = services.deliver_email(second.pk)

    assert (delivery.status, delivery.retry_in) == (None, None)
    assert len(smtp.received) == 2


def test_a_row_accepted_before_its_sent_was_lost_is_marked_in_the_batch_not_sent(
    smtp, queue, settings
):
    first, accepted = queued(queue, 2)
    services.outbox._remember_acceptance(accepted)
    EmailLog.objects.filter(pk=accepted.pk).update(attempts=1)  # a delivery took it once

    services.deliver_email(first.pk)

    assert reload(accepted).status == EmailLog.Status.SENT
    assert [m["To"] for m in smtp.messages] == [first.to_email]


def taken_by_another_while_sending(monkeypatch, row: EmailLog) -> None:
    """Once the next email is sent, another delivery claims `row` (this one's lease lapsed
    under it: a hang no time limit ended)."""
    send = sending.send

    def send_then_lose_the_row(message):
        send(message)
        EmailLog.objects.filter(pk=row.pk).update(
            claimed_at=timezone.now() + datetime.timedelta(seconds=1)
        )

    monkeypatch.setattr(sending, "send", send_then_lose_the_row)


def let_go(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "invoicegen.core.outbox"]


def test_a_batch_marks_sent_only_the_rows_it_still_holds(smtp, queue, monkeypatch, caplog):
    first, lost, last = queued(queue, 3)
    taken_by_another_while_sending(monkeypatch, lost)

    with caplog.at_level(logging.WARNING, logger="invoicegen.core.outbox"):
        assert services.deliver_email(first.pk).status == EmailLog.Status.SENT

    assert (reload(first).status, reload(last).status) == ("sent", "sent")
    assert reload(lost).status == EmailLog.Status.SENDING  # the other delivery's to end
    assert let_go(caplog) == [f"EMAIL {lost.pk} was taken back before this delivery ended"]


def test_a_delivery_whose_own_row_was_taken_back_says_so(smtp, queue, monkeypatch, caplog):
    [email] = queued(queue, 1)
    taken_by_another_while_sending(monkeypatch, email)

    with caplog.at_level(logging.WARNING, logger="invoicegen.core.outbox"):
        assert services.deliver_email(email.pk, batch=1).status is None

    assert reload(email).status == EmailLog.Status.SENDING
    assert let_go(caplog) == [f"EMAIL {email.pk} was taken back before this delivery ended"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_never_take_the_same_row(smtp, queue, race):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent claims need PostgreSQL (SQLite serializes every writer)")
    smtp.stop()  # the commit-time dispatch fails, and leaves the rows queued
    rows = queued(queue, 40)
    smtp.start()

    for _ in range(2):
        race(lambda: services.deliver_email(rows[0].pk, batch=10), 4)

    assert EmailLog.objects.filter(status="sent").count() == 40
    assert len(smtp.received) == 40  # each once
    assert sorted(m["Message-ID"] for m in smtp.messages) == sorted(
        EmailLog.objects.filter(status="sent").values_list("message_id", flat=True)
    )


def test_a_transaction_hands_over_a_task_per_batch_and_every_row_goes(
    smtp, monkeypatch, django_capture_on_commit_callbacks
):
    handed = []
    monkeypatch.setattr(services.outbox, "hand_over", lambda row_id: handed.append(row_id))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        rows = [
            services.queue_email("welcome", to=f"u{n}@example.com", context={"name": "U"})
            for n in range(120)
        ]
    assert handed == [rows[0].pk, rows[50].pk, rows[100].pk]
    for row_id in handed:
        services.deliver_email(row_id)
    assert len(smtp.received) == 120
    assert set(EmailLog.objects.values_list("status", flat=True)) == {"sent"}


def test_rows_of_a_rolled_back_savepoint_are_not_handed_over(
    monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_SEND_BATCH = 1  # every row its own task: which rows are handed over shows
    handed = []
    monkeypatch.setattr(services.outbox, "hand_over", lambda row_id: handed.append(row_id))
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        kept = services.queue_email("welcome", to="kept@example.com", context={"name": "K"})
        with suppress(RuntimeError), transaction.atomic():
            services.queue_email("welcome", to="gone@example.com", context={"name": "G"})
            raise RuntimeError
        later = services.queue_email("welcome", to="later@example.com", context={"name": "L"})
    assert handed == [kept.pk, later.pk]
    assert list(EmailLog.objects.order_by("pk").values_list("pk", flat=True)) == handed


def test_a_delivery_whose_row_another_took_claims_a_whole_batch_of_others(smtp, queue, settings):
    settings.EMAIL_SEND_BATCH = 3
    first, *others = queued(queue, 7)
    services.deliver_email(others[-1].pk)  # takes its own row and the first two due: first, one
    assert EmailLog.objects.filter(status="sent").count() == 3
    services.deliver_email(first.pk)  # its row is sent: it takes three, not two
    assert EmailLog.objects.filter(status="sent").count() == 6
