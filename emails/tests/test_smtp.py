"""The deadline on each send: a server that trickles its answers is abandoned in time, the row
goes back to the queue for a retry, and the worker goes on with the next email."""

import time

import pytest

from emails import services
from emails.models import EmailLog
from emails.tests.helpers import make_due, reload

pytestmark = pytest.mark.django_db


def deliver_timed(email) -> tuple[services.Delivery, float]:
    started = time.monotonic()
    delivery = services.deliver_email(email.pk)
    return delivery, time.monotonic() - started


@pytest.mark.parametrize(
    "stage, tls",
    [("greeting", {}), ("smtps", {"EMAIL_USE_SSL": True}), ("starttls", {"EMAIL_USE_TLS": True})],
)
def test_a_trickling_server_is_abandoned_at_the_deadline_and_the_row_retried(
    trickling_smtp, queue, settings, stage, tls
):
    trickling_smtp.trickle = stage
    for name, value in tls.items():
        setattr(settings, name, value)
    email = queue()

    delivery, elapsed = deliver_timed(email)

    assert delivery.status == EmailLog.Status.QUEUED
    assert elapsed < 2, f"the send took {elapsed:.1f} s against a 1 s deadline"
    row = reload(email)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "SendDeadlineExceeded" in row.last_error
    assert "EMAIL_SEND_TIMEOUT (1 s)" in row.last_error


def test_trickled_reply_on_a_kept_connection_is_abandoned_and_the_next_email_goes_out(
    trickling_smtp, queue
):
    first, slow, after = queue("first@example.com"), queue("slow@example.com"), queue()
    assert services.deliver_email(first.pk).status == EmailLog.Status.SENT  # connection kept

    trickling_smtp.trickle = "data"
    delivery, elapsed = deliver_timed(slow)
    assert delivery.status == EmailLog.Status.QUEUED
    assert elapsed < 2, f"the send took {elapsed:.1f} s against a 1 s deadline"
    assert "SendDeadlineExceeded" in reload(slow).last_error

    trickling_smtp.trickle = None  # the server recovers: the next send opens a new connection
    assert services.deliver_email(after.pk).status == EmailLog.Status.SENT
    make_due(slow)
    assert services.deliver_email(slow.pk).status == EmailLog.Status.SENT
    assert trickling_smtp.accepted == 3
