import pytest
from celery.exceptions import Retry
from django.conf import settings
from django.core import checks

from emails import tasks
from emails.models import EmailLog
from emails.tests.helpers import stuck_in_sending
from invoicegen import celery_app
from invoicegen.core.outbox import Delivery, run_delivery

pytestmark = pytest.mark.django_db


def test_deliver_email_task_sends_the_row_and_returns_its_status(smtp, queue):
    email = queue()

    result = tasks.deliver_email.delay(email_id=email.pk)

    assert result.get() == EmailLog.Status.SENT
    assert [m["Message-ID"] for m in smtp.messages] == [email.message_id]


def test_duplicate_task_message_sends_one_email(smtp, queue):
    email = queue()

    first = tasks.deliver_email.delay(email_id=email.pk)
    second = tasks.deliver_email.delay(email_id=email.pk)

    assert (first.get(), second.get()) == (EmailLog.Status.SENT, None)
    assert len(smtp.received) == 1
    assert EmailLog.objects.get(pk=email.pk).attempts == 1


def test_deliver_email_task_leaves_a_temporary_failure_to_the_rows_schedule(smtp, queue):
    smtp.answer("421 4.7.0 Too busy, try later", times=1)
    email = queue()

    assert tasks.deliver_email.delay(email_id=email.pk).get() == EmailLog.Status.QUEUED

    row = EmailLog.objects.get(pk=email.pk)
    assert (row.status, row.attempts) == (EmailLog.Status.QUEUED, 1)
    assert "421" in row.last_error


def test_on_a_worker_a_temporary_failure_retries_the_task_and_an_end_does_not():
    """What a worker does with a delivery's answer (a test's eager task runs the row's
    schedule instead): a retry of the task for a failure worth one, the status otherwise."""
    tasks.deliver_email.push_request(is_eager=False)
    try:
        with pytest.raises(Retry):
            run_delivery(tasks.deliver_email, Delivery(EmailLog.Status.QUEUED, retry_in=42))
        assert run_delivery(tasks.deliver_email, Delivery(EmailLog.Status.SENT)) == "sent"
        assert run_delivery(tasks.deliver_email, Delivery(None)) is None
    finally:
        tasks.deliver_email.pop_request()


def test_redispatch_task_sends_every_due_row(smtp, queue):
    for n in range(3):
        queue(f"user{n}@example.com")
    stuck = queue("stuck@example.com")
    stuck_in_sending(stuck, seconds_ago=settings.EMAIL_SENDING_LEASE_SECONDS + 1)

    assert tasks.redispatch_pending_emails.delay().get() == 4

    assert len(smtp.received) == 4
    assert set(EmailLog.objects.values_list("status", flat=True)) == {EmailLog.Status.SENT}


def test_beat_runs_the_sweeper_every_minute():
    schedule = {
        entry["task"]: entry["schedule"] for entry in celery_app.conf.beat_schedule.values()
    }
    assert schedule["emails.tasks.redispatch_pending_emails"] <= 60
    assert "emails.tasks.redispatch_pending_emails" in celery_app.tasks


def test_delayed_task_message_outlives_its_countdown_on_the_broker():
    """A retry waits up to EMAIL_RETRY_MAX_SECONDS (with jitter) unacknowledged on Redis: a
    shorter visibility timeout would redeliver it to a second worker meanwhile."""
    visibility = celery_app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > 1.25 * settings.EMAIL_RETRY_MAX_SECONDS


def test_a_lease_no_longer_than_the_delivery_tasks_time_limit_fails_the_system_check(settings):
    """Or a second worker would take a row whose first worker still sends it."""

    def lease_errors() -> list[str]:
        return [m.msg for m in checks.run_checks() if m.id == "emails.E001"]

    settings.EMAIL_SENDING_LEASE_SECONDS = tasks.TIME_LIMIT
    [error] = lease_errors()
    assert f"EMAIL_SENDING_LEASE_SECONDS ({tasks.TIME_LIMIT})" in error
    settings.EMAIL_SENDING_LEASE_SECONDS = tasks.TIME_LIMIT + 1
    assert lease_errors() == []
