from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from emails.models import EmailLog
from emails.tests.helpers import (
    celery_publishing_to,
    dispatched_email_ids,
    make_due,
    stuck_in_sending,
)

pytestmark = pytest.mark.django_db


def send_queued_emails(*args) -> str:
    out = StringIO()
    call_command("send_queued_emails", *args, stdout=out)
    return out.getvalue()


def test_send_queued_emails_sends_what_is_due_and_counts_the_outcomes(smtp, queue):
    smtp.answer("550 5.1.1 No such user", stage="RCPT", to="bounce@example.com")
    queue("ada@example.com")
    queue("grace@example.com")
    queue("bounce@example.com")

    output = send_queued_emails()

    assert "3 due: 1 failed, 2 sent" in output
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["ada@example.com", "grace@example.com"]


def test_send_queued_emails_with_nothing_due_says_so(smtp):
    assert "0 due: nothing to send" in send_queued_emails()


def test_send_queued_emails_delivers_once_the_server_is_back(smtp, queue):
    email = queue()
    smtp.stop()
    assert "1 due: 1 queued" in send_queued_emails()
    smtp.start()
    assert "0 due" in send_queued_emails()  # still inside its backoff
    make_due(email)

    assert "1 due: 1 sent" in send_queued_emails()
    assert "0 due" in send_queued_emails()
    assert [m["Message-ID"] for m in smtp.messages] == [email.message_id]


def test_send_queued_emails_picks_up_a_row_abandoned_in_sending(smtp, queue, settings):
    settings.EMAIL_SENDING_LEASE_SECONDS = 60
    abandoned = queue("abandoned@example.com")
    in_flight = queue("in-flight@example.com")
    stuck_in_sending(abandoned, seconds_ago=61)
    stuck_in_sending(in_flight, seconds_ago=30)

    assert "1 due: 1 sent" in send_queued_emails()

    assert [r.rcpt_tos for r in smtp.received] == [["abandoned@example.com"]]
    assert EmailLog.objects.get(pk=in_flight.pk).status == EmailLog.Status.SENDING


def test_send_queued_emails_sends_no_more_than_its_limit(smtp, queue):
    for n in range(3):
        queue(f"user{n}@example.com")

    assert "2 due: 2 sent" in send_queued_emails("--limit", "2")
    assert EmailLog.objects.filter(status=EmailLog.Status.QUEUED).count() == 1


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_send_queued_emails_refuses_a_limit_below_one(limit):
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        send_queued_emails("--limit", limit)


def test_send_queued_emails_dispatch_hands_each_due_row_to_the_workers(smtp, queue, redis_server):
    emails = [queue(f"user{n}@example.com") for n in range(3)]

    with celery_publishing_to(redis_server.url()):
        output = send_queued_emails("--dispatch")

    assert "dispatched 3 email(s) to the workers" in output
    assert dispatched_email_ids(redis_server.client()) == [email.pk for email in emails]
    assert smtp.received == []  # sending is the workers' job
    assert set(EmailLog.objects.values_list("status", flat=True)) == {EmailLog.Status.QUEUED}
