import pytest
from django.conf import settings

from emails import tasks
from emails.models import EmailLog
from emails.tests.helpers import stuck_in_sending
from invoicegen import celery_app

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
