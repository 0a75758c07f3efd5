"""Sending through a provider (anymail's test backend) and through SMTP to a real server: the
provider's message id is kept; a suppressed address is never sent to; a 5xx refusal at send
time is a hard bounce."""

import os
import subprocess
import sys

import pytest
from anymail.exceptions import AnymailAPIError
from django.core import mail

from audit.models import AuditLog
from emails import delivery, services
from emails.models import DeliveryStatus, EmailEvent, EmailLog, EmailOptOut, EmailSuppression
from emails.tests.helpers import reload
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    mail.outbox = []
    return mail.outbox


def test_a_provider_send_keeps_the_providers_message_id_on_the_row(provider, queue):
    email = queue("ada@example.com")
    services.deliver_email(email.pk)
    email = reload(email)
    assert email.status == EmailLog.Status.SENT
    assert len(provider) == 1
    assert email.provider_message_id == str(provider[0].anymail_status.message_id)
    assert EmailLog.objects.filter(provider_message_id=email.provider_message_id).count() == 1


def test_an_email_to_a_suppressed_address_ends_suppressed_with_no_provider_call(provider, queue):
    delivery.suppress_address("Ada@Example.com", reason="bounced", source="postmark")
    email = queue("ada@example.com")
    services.deliver_email(email.pk)
    email = reload(email)
    assert provider == []
    assert email.status == EmailLog.Status.FAILED
    assert email.delivery_status == DeliveryStatus.SUPPRESSED
    assert email.last_error.startswith("Suppressed:")
    assert services.deliver_email(email.pk).status is None  # the claim never takes it again
    assert provider == []


def test_an_email_to_a_suppressed_address_makes_no_smtp_call(smtp, queue):
    delivery.suppress_address("grace@example.com", reason="complained", source="mailgun")
    services.deliver_email(queue("grace@example.com").pk)
    services.deliver_email(queue("ada@example.com").pk)
    assert [r.rcpt_tos for r in smtp.received] == [["ada@example.com"]]


def test_an_email_for_an_account_to_an_address_that_opted_out_ends_unsubscribed(smtp, queue):
    issuer = UserFactory()
    EmailOptOut.objects.create(
        address="client@acme.example", topic="invoice_reminder", sender=issuer
    )
    email = queue("Client@Acme.example", on_behalf_of=issuer, topic="invoice_reminder")
    other_topic = queue("client@acme.example", on_behalf_of=issuer, topic="invoice_sent")

    services.deliver_email(email.pk)
    services.deliver_email(other_topic.pk)

    email = reload(email)
    assert (email.status, email.delivery_status) == ("failed", DeliveryStatus.UNSUBSCRIBED)
    assert email.last_error.startswith("Unsubscribed:")
    assert [m["Message-ID"] for m in smtp.messages] == [other_topic.message_id]


def test_a_5xx_recipient_refusal_over_smtp_is_a_hard_bounce_that_suppresses(smtp, queue):
    smtp.answer("550 5.1.1 mailbox unavailable", stage="RCPT", to="gone@example.com")
    email = queue("gone@example.com")
    services.deliver_email(email.pk)
    email = reload(email)
    assert email.status == EmailLog.Status.FAILED
    assert email.delivery_status == DeliveryStatus.BOUNCED
    suppression = EmailSuppression.objects.get()
    assert (suppression.address, suppression.reason, suppression.source) == (
        "gone@example.com",
        "bounced",
        "smtp",
    )
    event = EmailEvent.objects.get()
    assert (event.email_id, event.provider, event.event_type) == (email.pk, "smtp", "bounced")
    assert "mailbox unavailable" in event.description
    assert AuditLog.objects.filter(action="email.address_suppressed").count() == 1
    # The next email to it is not sent at all.
    services.deliver_email(queue("gone@example.com").pk)
    assert smtp.received == []


def test_a_4xx_refusal_is_no_bounce(smtp, queue):
    smtp.answer("450 4.2.1 try later", stage="RCPT", to="busy@example.com")
    email = queue("busy@example.com")
    services.deliver_email(email.pk)
    assert reload(email).status == EmailLog.Status.QUEUED
    assert not EmailSuppression.objects.exists()


@pytest.mark.parametrize(
    ("provider_name", "backend"),
    [
        ("smtp", "emails.smtp.EmailBackend"),
        ("postmark", "anymail.backends.postmark.EmailBackend"),
        ("amazon_ses", "anymail.backends.amazon_ses.EmailBackend"),
    ],
)
def test_email_provider_selects_the_backend(provider_name, backend):
    env = {**os.environ, "EMAIL_PROVIDER": provider_name, "SMTP_HOST": "mail.example.com"}
    env["POSTMARK_SERVER_TOKEN"] = "server-token"
    code = "from django.conf import settings as s; print(s.EMAIL_BACKEND, s.ANYMAIL)"
    env["DJANGO_SETTINGS_MODULE"] = "invoicegen.settings"
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split()[0] == backend
    assert "'POSTMARK_SERVER_TOKEN': 'server-token'" in run.stdout


def test_amazon_ses_calls_are_bounded_by_email_timeout_and_tried_once():
    """boto3 has timeouts and retries of its own (60 s each, several tries), past the lease."""
    env = {**os.environ, "EMAIL_PROVIDER": "amazon_ses", "AMAZON_SES_REGION": "eu-west-1"}
    env.update(DJANGO_SETTINGS_MODULE="invoicegen.settings", EMAIL_TIMEOUT="7")
    code = (
        "import django; django.setup(); "
        "from anymail.backends.amazon_ses import _get_anymail_boto3_params as params; "
        "c = params()[1]; "
        "print(c['region_name'], c['config'].connect_timeout, c['config'].read_timeout, "
        "c['config'].retries['total_max_attempts'])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == ["eu-west-1", "7", "7", "1"]


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (400, True),
        (413, True),
        (415, True),
        (422, True),
        (401, False),
        (403, False),
        (404, False),
        (429, False),
        (503, False),
    ],
)
def test_a_provider_refusing_the_message_is_final_and_refusing_the_account_is_retried(
    status, final
):
    """A rotated key or a domain not yet verified (401, 403, 404) is fixed by the account's
    owner; the emails wait for it rather than fail for good."""
    assert services.is_permanent(AnymailAPIError("refused", status_code=status)) is bool(final)
