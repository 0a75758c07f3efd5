"""The deadline on each send: a server (SMTP or a provider's API) that trickles its answers is
abandoned in time, the row goes back to the queue for a retry, and the worker goes on with the
next email."""

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


def assert_abandoned_and_retried(email) -> None:
    delivery, elapsed = deliver_timed(email)
    assert delivery.status == EmailLog.Status.QUEUED
    assert elapsed < 2, f"the send took {elapsed:.1f} s against a 1 s deadline"
    row = reload(email)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "SendDeadlineExceeded" in row.last_error
    assert "EMAIL_SEND_TIMEOUT (1 s)" in row.last_error


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

    assert_abandoned_and_retried(email)


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


def provider_api_at(settings, trickling_provider, scheme: str) -> None:
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "POSTMARK_API_URL": f"{scheme}://127.0.0.1:{trickling_provider.port}/",
    }


@pytest.mark.parametrize(
    "stage, scheme",
    [("tls", "https"), ("headers", "http"), ("body", "http"), ("closing body", "http")],
)
def test_a_trickling_provider_api_is_abandoned_at_the_deadline_and_the_row_retried(
    trickling_provider, queue, settings, stage, scheme
):
    trickling_provider.trickle = stage
    provider_api_at(settings, trickling_provider, scheme)
    email = queue()

    assert_abandoned_and_retried(email)


def test_trickled_answer_on_a_kept_alive_provider_connection_is_abandoned_and_the_next_goes_out(
    trickling_provider, queue
):
    first, second, slow, after = (queue(f"{name}@example.com") for name in "abcd")
    assert services.deliver_email(first.pk).status == EmailLog.Status.SENT
    assert services.deliver_email(second.pk).status == EmailLog.Status.SENT
    assert trickling_provider.connections == 1  # kept alive between sends

    trickling_provider.trickle = "body"
    delivery, elapsed = deliver_timed(slow)
    assert delivery.status == EmailLog.Status.QUEUED
    assert elapsed < 2, f"the send took {elapsed:.1f} s against a 1 s deadline"
    assert "SendDeadlineExceeded" in reload(slow).last_error
    assert trickling_provider.connections == 1  # cut on the kept-alive connection

    trickling_provider.trickle = None  # the API recovers: the next send opens a new connection
    assert services.deliver_email(after.pk).status == EmailLog.Status.SENT
    make_due(slow)
    assert services.deliver_email(slow.pk).status == EmailLog.Status.SENT
    assert trickling_provider.connections == 2
    assert trickling_provider.accepted == 4
    assert reload(after).provider_message_id
