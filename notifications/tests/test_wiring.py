"""What a user sees after acting through the API: the notification feed and the emails that
reach the mailbox once the request's transaction commits (the outbox task runs eagerly)."""

import html
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.utils.html import strip_tags

from emails.models import EmailLog
from emails.tests.helpers import stored_values
from invoicegen.accounts.models import User
from invoicegen.billing.models import Payment, Subscription
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    SubscriptionFactory,
    finalized_invoice,
    invoice_in_status,
)

pytestmark = pytest.mark.django_db

FEED = "/api/notifications/"
NEW_PASSWORD = "a-brand-new-Passphrase-42"


@pytest.fixture
def capture(django_capture_on_commit_callbacks):
    """Run what the request leaves for after its commit: the emails are sent then."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def owner(user):
    user.name = "Ada Lovelace"
    user.save()
    return user


def feed(api) -> list[dict]:
    response = api.get(FEED)
    assert response.status_code == 200
    return response.json()["results"]


def html_part(message) -> str:
    [(content, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return content


def in_both_parts(text: str, message) -> bool:
    """`text` is in the plain part and in what the HTML part shows (tags stripped)."""
    shown = " ".join(html.unescape(strip_tags(html_part(message))).split())
    return text in message.body and text in shown


def linked_in_both_parts(url: str, message) -> bool:
    return url in message.body and url in html.unescape(html_part(message))


def outbox_row(message) -> EmailLog:
    """The EmailLog row a sent message came from: same Message-ID header, ended `sent`."""
    row = EmailLog.objects.get(message_id=message.message()["Message-ID"])
    assert row.status == EmailLog.Status.SENT
    assert row.sent_at is not None
    assert message.to == [row.to_email]
    return row


def single_message(**expected) -> mail.EmailMessage:
    matching = [
        message
        for message in mail.outbox
        if all(getattr(message, key) == value for key, value in expected.items())
    ]
    assert len(matching) == 1, [(m.subject, m.to) for m in mail.outbox]
    return matching[0]


def link_in(message, page: str) -> tuple[str, str, str]:
    """The (url, uid, token) of the SPA link to `page` in both parts of the message."""
    pattern = rf"{re.escape(settings.APP_BASE_URL)}/{page}\?uid=([\w-]+)&token=([\w-]+)"
    match = re.search(pattern, message.body)
    assert match, message.body
    assert match.group(0) in html.unescape(html_part(message))
    return match.group(0), match.group(1), match.group(2)


def assert_not_stored(secret: str) -> None:
    for row in EmailLog.objects.all():
        assert secret not in stored_values(row), f"{row.template_name} row holds a secret"


# Accounts


def test_signup_sends_a_welcome_and_a_verification_email_whose_link_verifies(anon_client, capture):
    with capture():
        response = anon_client.post(
            "/api/auth/signup/",
            {"email": "grace@example.com", "password": NEW_PASSWORD, "name": "Grace Hopper"},
        )

    assert response.status_code == 201
    assert sorted(m.subject for m in mail.outbox) == [
        "Confirm your email address",
        "Welcome to invoicegen",
    ]
    welcome = single_message(subject="Welcome to invoicegen")
    verification = single_message(subject="Confirm your email address")
    for message in (welcome, verification):
        assert message.to == ["grace@example.com"]
        assert in_both_parts("Hello Grace Hopper", message)
        outbox_row(message)
    url, uid, token = link_in(verification, "verify-email")
    assert_not_stored(token)
    assert_not_stored(url)

    verified = anon_client.post("/api/auth/verify-email/", {"uid": uid, "token": token})

    assert verified.status_code == 204
    assert User.objects.get(email="grace@example.com").email_verified is True


def test_password_reset_sends_a_working_reset_email_and_notifies_the_user(
    anon_client, api, owner, capture
):
    with capture():
        response = anon_client.post("/api/auth/password/reset/", {"email": owner.email})

    assert response.status_code == 202
    message = single_message(subject="Reset your invoicegen password")
    assert len(mail.outbox) == 1
    assert message.to == [owner.email]
    assert in_both_parts("Hello Ada Lovelace", message)
    outbox_row(message)
    url, uid, token = link_in(message, "reset-password")
    assert_not_stored(token)
    assert_not_stored(url)
    [notification] = feed(api)
    assert notification["type"] == "password_reset_requested"
    assert (notification["resource_type"], notification["resource_id"]) == ("user", str(owner.pk))
    assert notification["is_read"] is False

    confirmed = anon_client.post(
        "/api/auth/password/reset/confirm/",
        {"uid": uid, "token": token, "new_password": NEW_PASSWORD},
    )

    assert confirmed.status_code == 204
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_password_reset_for_an_unknown_email_sends_and_notifies_nothing(anon_client, capture):
    with capture():
        response = anon_client.post("/api/auth/password/reset/", {"email": "nobody@example.com"})

    assert response.status_code == 202
    assert mail.outbox == []
    assert not EmailLog.objects.exists()


# Invoices


def test_finalizing_an_invoice_notifies_and_emails_the_owner(api, owner, capture):
    invoice = InvoiceFactory(user=owner, client_name="Acme Ltd")

    with capture():
        response = api.post(f"/api/invoices/{invoice.pk}/finalize/")

    assert response.status_code == 200
    [notification] = feed(api)
    assert notification["type"] == "invoice_finalized"
    assert notification["title"] == f"Invoice {invoice.number} finalized"
    assert (notification["resource_type"], notification["resource_id"]) == (
        "invoice",
        str(invoice.pk),
    )
    [message] = mail.outbox
    assert message.to == [owner.email]
    assert message.subject == f"Invoice {invoice.number} is finalized"
    assert in_both_parts(f"{invoice.number} (${invoice.total}) for Acme Ltd is finalized", message)
    assert linked_in_both_parts(f"{settings.APP_BASE_URL}/invoices/{invoice.pk}", message)
    assert outbox_row(message).notification_id == notification["id"]


@pytest.mark.parametrize(
    ("body", "client_address"),
    [({}, "billing@acme.example"), ({"to": "boss@acme.example"}, "boss@acme.example")],
)
def test_sending_an_invoice_notifies_the_owner_and_emails_owner_and_client(
    api, owner, capture, body, client_address
):
    invoice = finalized_invoice(
        user=owner, client_name="Acme Ltd", client_email="billing@acme.example"
    )

    with capture():
        response = api.post(f"/api/invoices/{invoice.pk}/send/", body)

    assert response.status_code == 202
    assert [n["type"] for n in feed(api)] == ["invoice_sent", "invoice_finalized"]
    assert feed(api)[0]["message"] == f"Sent to {client_address}."
    assert len(mail.outbox) == 2
    to_owner = single_message(to=[owner.email])
    assert to_owner.subject == f"Invoice {invoice.number} was sent"
    assert in_both_parts(f"{invoice.number} (${invoice.total}) was emailed to Acme Ltd", to_owner)
    to_client = single_message(to=[client_address])
    assert to_client.subject == f"Invoice {invoice.number} from Ada Lovelace"
    assert in_both_parts("Hello Acme Ltd", to_client)
    assert in_both_parts(
        f"Ada Lovelace sent you invoice {invoice.number} for ${invoice.total}", to_client
    )
    assert outbox_row(to_owner).notification_id == feed(api)[0]["id"]
    assert outbox_row(to_client).template_name == "invoice_notification_client"


def test_paying_an_invoice_in_full_notifies_and_emails_the_owner(api, owner, capture):
    invoice = invoice_in_status("sent", user=owner, client_name="Acme Ltd")

    with capture():
        response = api.post(
            f"/api/invoices/{invoice.pk}/payments/",
            {"amount": str(invoice.total), "method": "card"},
        )

    assert response.status_code == 201
    assert feed(api)[0]["type"] == "invoice_paid"
    assert feed(api)[0]["message"] == f"Acme Ltd paid ${invoice.total} in full."
    [message] = mail.outbox
    assert message.to == [owner.email]
    assert message.subject == f"Invoice {invoice.number} is paid"
    assert in_both_parts(
        f"Acme Ltd paid invoice {invoice.number} (${invoice.total}) in full.", message
    )
    assert outbox_row(message).notification_id == feed(api)[0]["id"]


def test_a_partial_payment_notifies_and_emails_nothing(api, owner, capture):
    invoice = invoice_in_status("sent", user=owner)
    before = [n["id"] for n in feed(api)]
    emails_before = EmailLog.objects.count()

    with capture():
        response = api.post(
            f"/api/invoices/{invoice.pk}/payments/",
            {"amount": str(invoice.total - Decimal("0.01")), "method": Payment.Method.CASH},
        )

    assert response.status_code == 201
    assert [n["id"] for n in feed(api)] == before
    assert mail.outbox == []
    assert EmailLog.objects.count() == emails_before


# Subscriptions


@pytest.mark.parametrize(
    ("existing", "path", "body", "expected_status", "notification_type", "subject"),
    [
        (
            None,
            "/api/subscription/",
            {"plan": "pro"},
            201,
            "subscription_activated",
            "Your pro subscription is active",
        ),
        (
            Subscription.Status.ACTIVE,
            "/api/subscription/cancel/",
            {},
            200,
            "subscription_cancelled",
            "Your pro subscription is cancelled",
        ),
        (
            Subscription.Status.CANCELLED,
            "/api/subscription/renew/",
            {},
            200,
            "subscription_renewed",
            "Your pro subscription is renewed",
        ),
    ],
)
def test_subscription_changes_notify_and_email_the_subscriber(
    api, owner, capture, existing, path, body, expected_status, notification_type, subject
):
    if existing:
        SubscriptionFactory(user=owner, plan=Subscription.Plan.PRO, status=existing)

    with capture():
        response = api.post(path, body)

    assert response.status_code == expected_status
    subscription = Subscription.objects.get(user=owner)
    [notification] = feed(api)
    assert (notification["type"], notification["title"]) == (notification_type, subject)
    assert (notification["resource_type"], notification["resource_id"]) == (
        "subscription",
        str(subscription.pk),
    )
    [message] = mail.outbox
    assert (message.to, message.subject) == ([owner.email], subject)
    end = subscription.current_period_end
    period_end = f"Current period ends {end:%b} {end.day}, {end.year}."
    assert in_both_parts(period_end, message)
    assert linked_in_both_parts(f"{settings.APP_BASE_URL}/subscription", message)
    row = outbox_row(message)
    assert row.template_name == "subscription_notification"
    assert row.notification_id == notification["id"]
