import datetime
import html
import random
import re
import smtplib
from email.header import decode_header, make_header
from email.utils import parseaddr
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from emails import services
from emails.models import EmailLog
from emails.tests.helpers import (
    make_due,
    reload,
    stored_values,
    stuck_in_sending,
    unreachable_redis_caches,
)
from invoicegen.accounts import services as accounts
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.accounts.tokens import email_verification_token

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-passphrase-9"


class Boom(Exception):
    pass


def links(text: str) -> list[str]:
    return [html.unescape(url) for url in re.findall(r"https?://[^\s\"<]+", text)]


# Every email is a row first


def test_queued_email_is_a_queued_row_in_the_callers_transaction_sent_only_after_commit(
    smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            email = services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})
            row = reload(email)
            assert row.status == EmailLog.Status.QUEUED
            assert row.attempts == 0
            assert re.fullmatch(r"<[^@<>]+@invoicegen\.local>", row.message_id)
            assert row.subject == "Welcome to invoicegen"
        assert smtp.received == []  # the outer transaction has not committed yet

    assert len(callbacks) == 1
    row = reload(email)
    assert row.status == EmailLog.Status.SENT
    assert row.sent_at is not None
    assert row.attempts == 1
    assert [received.message["Message-ID"] for received in smtp.received] == [row.message_id]
    assert smtp.received[0].rcpt_tos == ["ada@example.com"]


@pytest.mark.django_db(transaction=True)
def test_an_email_queued_outside_a_transaction_goes_at_once(smtp):
    email = services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})

    assert reload(email).status == EmailLog.Status.SENT
    assert [m["Message-ID"] for m in smtp.messages] == [email.message_id]


def test_each_commit_hands_over_its_own_rows_when_a_test_captures_several(
    smtp, queue, django_capture_on_commit_callbacks
):
    """Captured callbacks stay registered after they ran: the next commit's rows must not join
    a hand-over that is over."""
    for to in ("ada@example.com", "grace@example.com"):
        with django_capture_on_commit_callbacks(execute=True):
            queue(to)

    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["ada@example.com", "grace@example.com"]


def test_rolled_back_transaction_leaves_no_row_and_sends_nothing(
    smtp, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})
        raise Boom

    assert callbacks == []
    assert not EmailLog.objects.exists()
    assert smtp.received == []


@pytest.mark.django_db(transaction=True)
def test_email_leaves_only_when_a_real_transaction_commits(smtp):
    with pytest.raises(Boom), transaction.atomic():
        services.queue_email("welcome", to="lost@example.com", context={"name": "Lost"})
        raise Boom
    with transaction.atomic():
        email = services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})
        assert smtp.received == []

    assert list(EmailLog.objects.values_list("to_email", "status")) == [
        ("ada@example.com", EmailLog.Status.SENT)
    ]
    assert [message["Message-ID"] for message in smtp.messages] == [reload(email).message_id]


def test_delivered_email_is_multipart_with_subject_links_and_the_rows_message_id(
    smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user = accounts.sign_up(email="ada@example.com", password=PASSWORD, name="Ada")

    row = EmailLog.objects.get(template_name="email_verification")
    [message] = [m for m in smtp.messages if m["Message-ID"] == row.message_id]
    assert message["Subject"] == "Confirm your email address" == row.subject
    assert message["To"] == "ada@example.com"
    assert message["From"] == "noreply@invoicegen.local"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    body_html = message.get_body(("html",)).get_content()
    assert "Hello Ada," in text
    assert "<p>Hello Ada,</p>" in body_html

    verify_links = [url for url in links(text) if "/verify-email?" in url]
    assert len(verify_links) == 1
    assert verify_links[0] in links(body_html)
    query = parse_qs(urlsplit(verify_links[0]).query)
    assert email_verification_token.check_token(user, query["token"][0])
    # The secret link is made at sending time and never stored.
    assert query["token"][0] not in stored_values(row)


# Temporary failures: backoff, then delivery


def test_unreachable_server_puts_the_row_back_in_the_queue_with_a_backoff(smtp, queue, settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 30
    smtp.stop()
    email = queue()
    before = timezone.now()

    delivery = services.deliver_email(email.pk)

    row = reload(email)
    assert delivery.status == EmailLog.Status.QUEUED
    assert 22.5 <= delivery.retry_in <= 37.5
    assert row.status == EmailLog.Status.QUEUED
    assert row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error
    assert before + datetime.timedelta(seconds=22.5) <= row.next_attempt_at
    assert row.next_attempt_at <= timezone.now() + datetime.timedelta(seconds=37.5)
    assert row.sent_at is None


def test_row_waiting_for_its_backoff_is_not_sent_before_it_is_due(smtp, queue):
    email = queue()
    smtp.stop()
    services.deliver_email(email.pk)
    smtp.start()

    assert services.deliver_email(email.pk).status is None
    assert email.pk not in services.pending_emails().values_list("pk", flat=True)
    assert smtp.received == []
    assert reload(email).attempts == 1


def test_server_back_up_gets_the_email_once_with_the_message_id_of_the_first_try(smtp, queue):
    email = queue()
    message_id = reload(email).message_id
    smtp.stop()
    assert services.deliver_email(email.pk).status == EmailLog.Status.QUEUED
    smtp.start()
    make_due(email)

    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT
    assert services.deliver_email(email.pk).status is None

    row = reload(email)
    assert row.status == EmailLog.Status.SENT
    assert row.attempts == 2
    assert row.last_error == ""
    assert [message["Message-ID"] for message in smtp.messages] == [message_id]


def test_emails_a_worker_sends_go_through_the_connection_it_keeps(smtp, queue):
    """Opening and greeting cost as much as a send: a worker keeps its connection open."""
    emails = [queue(f"user{n}@example.com") for n in range(3)]

    for email in emails:
        assert services.deliver_email(email.pk).status == EmailLog.Status.SENT

    assert len(smtp.received) == 3
    assert len({received.peer for received in smtp.received}) == 1


def test_email_after_a_server_restart_goes_out_at_once_on_a_new_connection(smtp, queue):
    first, second = queue("first@example.com"), queue("second@example.com")
    assert services.deliver_email(first.pk).status == EmailLog.Status.SENT
    smtp.stop()  # drops the connection the worker kept open
    smtp.start()

    assert services.deliver_email(second.pk).status == EmailLog.Status.SENT

    assert reload(second).attempts == 1
    assert [r.rcpt_tos for r in smtp.received] == [["first@example.com"], ["second@example.com"]]
    assert smtp.received[0].peer != smtp.received[1].peer


def test_retry_delay_doubles_with_each_attempt_up_to_the_cap_within_a_quarter(settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 30
    settings.EMAIL_RETRY_MAX_SECONDS = 3600
    for attempts, nominal in [(1, 30), (2, 60), (3, 120), (5, 480), (8, 3600), (40, 3600)]:
        delays = [services.retry_delay(attempts) for _ in range(200)]
        assert 0.75 * nominal <= min(delays), attempts
        assert max(delays) <= 1.25 * nominal, attempts


def test_retry_delay_is_jittered_so_retries_spread_out(settings):
    settings.EMAIL_RETRY_BASE_SECONDS = 100
    delays = [services.retry_delay(1) for _ in range(200)]
    assert min(delays) < 90
    assert max(delays) > 110


# Replies of the server


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
@pytest.mark.parametrize("code", ["500", "550", "599"])  # every 5xx, the first and last
def test_permanent_reply_fails_the_row_at_once_and_audits_it(smtp, queue, stage, code):
    smtp.answer(f"{code} 5.1.1 No such mailbox here", stage=stage)
    email = queue()
    mark = last_entry_id()

    assert services.deliver_email(email.pk).status == EmailLog.Status.FAILED

    row = reload(email)
    assert row.status == EmailLog.Status.FAILED
    assert row.attempts == 1
    assert code in row.last_error
    assert "No such mailbox here" in row.last_error
    assert row.sent_at is None
    entry = only_entry(mark, "email.failed")
    assert entry.success is False
    assert (entry.resource_type, entry.resource_id) == ("email", str(email.pk))
    assert entry.metadata["to"] == "ada@example.com"
    assert entry.metadata["attempts"] == 1
    assert "No such mailbox here" in entry.metadata["reason"]


def test_permanently_failed_row_is_not_retried(smtp, queue):
    smtp.answer("550 5.1.1 No such mailbox here")
    email = queue()
    services.deliver_email(email.pk)
    make_due(email)

    assert services.redispatch_pending() == 0
    assert services.deliver_email(email.pk).status is None
    assert reload(email).attempts == 1
    assert len(smtp.refused) == 1


def test_temporary_reply_is_retried_and_then_delivered(smtp, queue):
    smtp.answer("451 4.3.0 Try again later", times=1)
    email = queue()
    mark = last_entry_id()

    assert services.deliver_email(email.pk).status == EmailLog.Status.QUEUED
    row = reload(email)
    assert (row.status, row.attempts) == (EmailLog.Status.QUEUED, 1)
    assert "451" in row.last_error
    assert row.next_attempt_at > timezone.now()
    assert actions_after(mark) == []

    make_due(email)
    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT
    assert [message["Message-ID"] for message in smtp.messages] == [row.message_id]


def test_temporary_failures_up_to_the_maximum_attempts_fail_the_row_with_the_reason(
    smtp, queue, settings
):
    settings.EMAIL_MAX_ATTEMPTS = 3
    smtp.answer("451 4.3.0 Greylisted, come back later")
    email = queue()
    mark = last_entry_id()

    outcomes = []
    for _ in range(4):
        outcomes.append(services.deliver_email(email.pk).status)
        make_due(email)

    assert outcomes == ["queued", "queued", "failed", None]
    row = reload(email)
    assert (row.status, row.attempts) == (EmailLog.Status.FAILED, 3)
    assert "Greylisted" in row.last_error
    assert len(smtp.refused) == 3
    entry = only_entry(mark, "email.failed")
    assert entry.metadata["attempts"] == 3
    assert entry.success is False


def test_a_failures_reason_is_kept_to_its_first_2000_characters(queue):
    email = queue()
    [row] = services.outbox._claim(email.pk)

    services.outbox._record_failure(row, Boom("é" * 3000), False, None)

    assert reload(email).last_error == "Boom: " + "é" * 1994


def test_template_that_cannot_be_rendered_is_recorded_not_raised(smtp, queue):
    email = queue()
    EmailLog.objects.filter(pk=email.pk).update(template_name="no_such_template")

    assert services.deliver_email(email.pk).status == EmailLog.Status.QUEUED
    assert "TemplateDoesNotExist" in reload(email).last_error
    assert smtp.received == []


# One row, one email


def test_delivering_one_row_twice_sends_one_email(smtp, queue):
    email = queue()

    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT
    assert services.deliver_email(email.pk).status is None

    assert len(smtp.received) == 1
    assert reload(email).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_workers_delivering_the_same_rows_at_once_send_each_email_once(smtp, queue, race):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent claims need PostgreSQL (SQLite serializes every writer)")
    smtp.stop()  # the commit-time dispatch fails, and leaves the rows queued
    emails = [queue(f"user{n}@example.com") for n in range(5)]
    smtp.start()
    make_due(*emails)
    workers = 4
    outcomes = []
    for email in emails:
        outcomes += race(lambda pk=email.pk: services.deliver_email(pk).status, workers)

    assert outcomes.count(EmailLog.Status.SENT) == 5
    assert outcomes.count(None) == 5 * (workers - 1)
    assert sorted(m["Message-ID"] for m in smtp.messages) == sorted(
        EmailLog.objects.values_list("message_id", flat=True)
    )
    assert set(EmailLog.objects.values_list("status", "attempts")) == {("sent", 2)}


# A worker killed mid-send


def test_a_sent_or_failed_row_is_never_taken_again_however_old_its_claim(smtp, queue, settings):
    """Only a `sending` row's lease lets another worker take it: a sent email would go out
    again, and a failed one be retried, once their claim is older than the lease."""
    settings.EMAIL_SENDING_LEASE_SECONDS = 45
    sent = queue("sent@example.com")
    services.deliver_email(sent.pk)
    smtp.answer("550 5.1.1 No such mailbox here")
    failed = queue("failed@example.com")
    services.deliver_email(failed.pk)
    long_ago = timezone.now() - datetime.timedelta(days=1)
    EmailLog.objects.update(claimed_at=long_ago, next_attempt_at=long_ago)

    assert services.redispatch_pending() == 0
    assert services.deliver_email(sent.pk).status is None
    assert services.deliver_email(failed.pk).status is None

    assert [(row.status, row.attempts) for row in (reload(sent), reload(failed))] == [
        ("sent", 1),
        ("failed", 1),
    ]
    assert len(smtp.received) == 1


def test_sweeper_sends_a_row_stuck_in_sending_past_its_lease(smtp, queue, settings):
    settings.EMAIL_SENDING_LEASE_SECONDS = 300
    abandoned = queue("abandoned@example.com")
    stuck_in_sending(abandoned, seconds_ago=301)

    assert services.redispatch_pending() == 1

    row = reload(abandoned)
    assert (row.status, row.attempts) == (EmailLog.Status.SENT, 2)
    assert [message["Message-ID"] for message in smtp.messages] == [row.message_id]


def test_sweeper_leaves_a_row_still_inside_its_sending_lease(smtp, queue, settings):
    settings.EMAIL_SENDING_LEASE_SECONDS = 300
    in_flight = queue("in-flight@example.com")
    stuck_in_sending(in_flight, seconds_ago=290)
    claimed_at = reload(in_flight).claimed_at

    assert services.redispatch_pending() == 0
    assert services.deliver_email(in_flight.pk).status is None

    row = reload(in_flight)
    assert (row.status, row.attempts, row.claimed_at) == ("sending", 1, claimed_at)
    assert smtp.received == []


def test_row_inside_another_workers_lease_comes_back_when_the_lease_ends(smtp, queue, settings):
    settings.EMAIL_SENDING_LEASE_SECONDS = 45
    in_flight = queue("in-flight@example.com")
    stuck_in_sending(in_flight, seconds_ago=10)

    delivery = services.deliver_email(in_flight.pk)

    assert delivery.status is None
    assert 35 <= delivery.retry_in <= 37  # the 35 s left, and a second for the clocks
    assert services.deliver_email(queue().pk).retry_in is None  # sent: nothing to come back for


def test_a_delivery_outlived_by_its_lease_leaves_the_next_deliverys_outcome_alone(
    smtp, queue, settings
):
    """A worker hung past its lease (a hang no time limit ended): another took the row and
    sent it; the late one's outcome, whatever it is, must not put the row back or fail it."""
    email = queue()
    [hung] = services.outbox._claim(email.pk)
    long_ago = timezone.now() - datetime.timedelta(seconds=settings.EMAIL_SENDING_LEASE_SECONDS + 1)
    EmailLog.objects.filter(pk=email.pk).update(claimed_at=long_ago)
    hung.claimed_at = long_ago

    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT
    error = smtplib.SMTPServerDisconnected()
    assert services.outbox._record_failure(hung, error, False, None).status is None
    failed = []
    assert services.outbox._record_failure(hung, error, True, failed.append).status is None
    assert failed == []  # not audited as failed either
    assert services.outbox._mark_sent([hung]) == set()

    row = reload(email)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, "")
    assert len(smtp.received) == 1


@pytest.mark.django_db(transaction=True)
def test_acceptance_whose_sent_mark_is_lost_is_marked_sent_by_the_retry_never_sent_twice(
    smtp, queue, settings
):
    """The database goes away between the server's 250 and the UPDATE to `sent`: the row
    stays `sending`, and the lease's retry must not send that Message-ID again."""
    if connection.vendor != "postgresql":
        pytest.skip("terminating the worker's own database session needs PostgreSQL")
    smtp.stop()  # the commit-time dispatch fails, and leaves the row queued
    email = queue()
    smtp.start()
    make_due(email)
    connection.ensure_connection()
    worker_session = connection.connection.info.backend_pid
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        smtp.handler.after_accept = lambda: admin.execute(
            "SELECT pg_terminate_backend(%s)", [worker_session]
        )
        with pytest.raises(DatabaseError):
            services.deliver_email(email.pk)
    smtp.handler.after_accept = None
    connection.close_if_unusable_or_obsolete()  # as a worker does between tasks
    assert (reload(email).status, len(smtp.received)) == ("sending", 1)

    stuck_in_sending(email, seconds_ago=settings.EMAIL_SENDING_LEASE_SECONDS + 1)
    assert services.redispatch_pending() == 1

    row = reload(email)
    assert (row.status, row.attempts) == ("sent", 2)
    assert [message["Message-ID"] for message in smtp.messages] == [row.message_id]


def test_an_accepted_email_left_sending_is_marked_sent_by_the_next_delivery_not_sent_again(
    smtp, queue, settings
):
    """What a worker killed between the server's 250 and its "sent" leaves (the row as the
    test above leaves it, on any database)."""
    email = queue()
    services.deliver_email(email.pk)
    stuck_in_sending(email, seconds_ago=settings.EMAIL_SENDING_LEASE_SECONDS + 1)

    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT

    assert (reload(email).status, reload(email).attempts) == ("sent", 2)
    assert [m["Message-ID"] for m in smtp.messages] == [email.message_id]


def test_with_the_cache_down_a_retry_sends_again_rather_than_lose_the_email(smtp, queue, settings):
    """Whether the lost attempt's server accepted it cannot be known: once more is better
    than never."""
    email = queue()
    stuck_in_sending(email, seconds_ago=settings.EMAIL_SENDING_LEASE_SECONDS + 1)

    with override_settings(CACHES=unreachable_redis_caches()):
        assert services.deliver_email(email.pk).status == EmailLog.Status.SENT

    assert [m["Message-ID"] for m in smtp.messages] == [email.message_id]


def test_sweeper_dispatches_due_rows_only(smtp, queue):
    due = queue("due@example.com")
    waiting = queue("waiting@example.com")
    EmailLog.objects.filter(pk=waiting.pk).update(
        next_attempt_at=timezone.now() + datetime.timedelta(minutes=5)
    )

    assert services.redispatch_pending() == 1
    assert [r.rcpt_tos for r in smtp.received] == [["due@example.com"]]
    assert reload(waiting).status == EmailLog.Status.QUEUED
    assert reload(due).status == EmailLog.Status.SENT


def test_sweeper_dispatches_no_more_than_its_limit(smtp, queue):
    for n in range(3):
        queue(f"user{n}@example.com")

    assert services.redispatch_pending(limit=2) == 2
    assert len(smtp.received) == 2
    assert EmailLog.objects.filter(status=EmailLog.Status.QUEUED).count() == 1


# Staff: retry and resend


def failed_email(smtp, queue) -> EmailLog:
    smtp.answer("550 5.7.1 Rejected by policy", times=1)
    email = queue()
    services.deliver_email(email.pk)
    return reload(email)


def test_retry_puts_a_failed_row_back_and_sends_it_with_its_message_id(
    smtp, queue, django_capture_on_commit_callbacks
):
    email = failed_email(smtp, queue)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_email(email) is True

    row = reload(email)
    assert row.status == EmailLog.Status.SENT
    assert row.attempts == 1  # counted afresh
    assert [message["Message-ID"] for message in smtp.messages] == [email.message_id]
    entry = only_entry(mark, "admin.email_retried")
    assert (entry.resource_type, entry.resource_id) == ("email", str(email.pk))


@pytest.mark.parametrize("status", ["queued", "sending", "sent"])
def test_retry_refuses_a_row_that_has_not_failed(
    smtp, queue, status, django_capture_on_commit_callbacks
):
    email = queue()
    EmailLog.objects.filter(pk=email.pk).update(status=status, attempts=1)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert services.retry_email(reload(email)) is False

    assert callbacks == []
    assert (reload(email).status, reload(email).attempts) == (status, 1)
    assert actions_after(mark) == []
    assert smtp.received == []


def test_resend_queues_a_new_row_with_a_new_message_id(
    smtp, queue, django_capture_on_commit_callbacks
):
    email = queue(resource=("invoice", 42))
    services.deliver_email(email.pk)
    original = reload(email)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        copy = services.resend_email(original)

    copy = reload(copy)
    assert copy.pk != original.pk
    assert copy.message_id != original.message_id
    assert copy.status == EmailLog.Status.SENT
    assert (copy.to_email, copy.template_name, copy.context) == (
        original.to_email,
        original.template_name,
        original.context,
    )
    assert (copy.resource_type, copy.resource_id) == ("invoice", "42")
    assert reload(original).status == EmailLog.Status.SENT
    assert [m["Message-ID"] for m in smtp.messages] == [original.message_id, copy.message_id]
    entry = only_entry(mark, "admin.email_resent")
    assert entry.resource_id == str(original.pk)
    assert entry.metadata["copy_id"] == copy.pk


def test_resend_of_an_email_for_an_account_comes_from_the_same_sender(
    smtp, django_capture_on_commit_callbacks
):
    issuer = UserFactory(email="issuer@example.com", name="Grace Hopper")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email = services.queue_email(
            "welcome",
            to="client@acme.example",
            context={"name": "Acme"},
            on_behalf_of=issuer,
            sender_name="Hopper Consulting",
        )
        copy = services.resend_email(email)

    assert reload(copy).from_email == email.from_email
    assert reload(copy).reply_to == "issuer@example.com"
    assert [m["From"] for m in smtp.messages] == [smtp.messages[0]["From"]] * 2
    assert "Hopper Consulting" in smtp.messages[1]["From"]


def test_resend_of_a_failed_row_leaves_the_failed_row_as_it_was(
    smtp, queue, django_capture_on_commit_callbacks
):
    email = failed_email(smtp, queue)

    with django_capture_on_commit_callbacks(execute=True):
        copy = services.resend_email(email)

    assert reload(email).status == EmailLog.Status.FAILED
    assert reload(copy).status == EmailLog.Status.SENT
    assert [m["Message-ID"] for m in smtp.messages] == [copy.message_id]


def test_a_subject_is_one_line_of_at_most_255_characters():
    """A title with line breaks (a header injected, in a raw message) reads as one line, and
    a long one is cut where the row's column ends."""

    def subject(title: str) -> str:
        context = {"name": "Ada", "title": title, "message": "Hello."}
        return services.queue_email("admin_message", to="ada@example.com", context=context).subject

    assert subject("\nPaid\r\nBcc: eve@example.com\nnow\r\n") == "Paid  Bcc: eve@example.com now"
    assert subject("é" * 300) == "é" * 255
    assert subject("é" * 255) == "é" * 255


def test_the_stored_subject_is_the_sent_subject_unescaped():
    email = services.queue_email(
        "admin_message",
        to="ada@example.com",
        context={"name": "Ada", "title": "Fish & <Chips>", "message": "Hello."},
    )

    assert email.subject == "Fish & <Chips>"
    assert services.render(email, with_secrets=True).subject == email.subject


# Emails sent for an account


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Grace Hopper", "Grace Hopper via invoicegen"),
        ('Ada "The Countess" Lovelace', "Ada The Countess Lovelace via invoicegen"),
        (
            "Zoë Müller\r\nBcc: victim@example.com",
            "Zoë Müller Bcc: victim example.com via invoicegen",
        ),
        ("support@bank.example", "support bank.example via invoicegen"),  # no address look-alike
        ("", "issuer example.com via invoicegen"),  # the address, as a name only
        ("x" * 150, "x" * 100 + " via invoicegen"),  # one header line, and the column
    ],
)
def test_an_email_for_an_account_comes_from_it_via_the_platform_and_replies_reach_it(
    smtp, django_capture_on_commit_callbacks, name, shown
):
    issuer = UserFactory(email="issuer@example.com", name=name)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        services.queue_email(
            "admin_message",
            to="client@acme.example",
            context={"name": "Acme", "title": "Hello", "message": "Hi."},
            on_behalf_of=issuer,
        )

    [message] = smtp.messages
    display, address = parseaddr(str(make_header(decode_header(message["From"]))))
    assert (display, address) == (shown, "noreply@invoicegen.local")
    assert message["Reply-To"] == "issuer@example.com"
    assert message["Bcc"] is None  # a line break in a name starts no header
    assert [received.rcpt_tos for received in smtp.received] == [["client@acme.example"]]


def test_the_emails_queued_for_an_account_are_counted_from_a_moment_on(queue):
    issuer, other = UserFactory(), UserFactory()
    for account in (issuer, issuer, other, None):
        queue("client@acme.example", on_behalf_of=account)
    minute = datetime.timedelta(minutes=1)

    assert services.count_sent_on_behalf(issuer, since=timezone.now() - minute) == 2
    assert services.count_sent_on_behalf(issuer, since=timezone.now() + minute) == 0


def test_an_email_to_an_account_itself_has_the_plain_sender_and_no_reply_to(
    smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})

    [message] = smtp.messages
    assert message["From"] == "noreply@invoicegen.local"
    assert message["Reply-To"] is None


@pytest.mark.parametrize(
    ("asked", "subject", "greeting"),
    [
        ("", "Willkommen bei invoicegen", "Ihr Konto ist eingerichtet"),
        ("fr", "Bienvenue sur invoicegen", "Votre compte est prêt"),
    ],
)
def test_an_email_is_written_in_the_language_asked_for_or_else_its_readers(
    smtp, django_capture_on_commit_callbacks, asked, subject, greeting
):
    reader = UserFactory(language="de")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        email = services.queue_email(
            "welcome", to=reader.email, context={"name": "Ada"}, user=reader, language=asked
        )

    assert (email.language, email.subject) == (asked or "de", subject)
    [message] = smtp.messages
    assert str(make_header(decode_header(message["Subject"]))) == subject
    assert greeting in message.get_body(("plain",)).get_content()


def test_message_ids_stay_unique_when_the_random_module_repeats_itself():
    """A seeded `random` (a test's, a property-based fuzzer's) once gave two emails queued in
    the same second the same Message-ID: the second one's insert failed (a 500 at signup)."""
    ids = []
    for _ in range(2):
        random.seed(7)
        ids.append(
            services.queue_email(
                "admin_message", to="ada@example.com", context={"title": "Hi", "message": "."}
            ).message_id
        )

    assert ids[0] != ids[1]
