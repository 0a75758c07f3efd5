"""Which webhook events each change of billing's sends, with what, in the change's
transaction (webhooks/ sends them; webhooks/tests test how)."""

import json

import pytest

from downloads import services as downloads
from emails import delivery
from emails.models import DeliveryStatus
from invoicegen.billing import services as billing
from invoicegen.billing.models import Subscription
from invoicegen.billing.tests.factories import InvoiceFactory
from invoicegen.billing.tests.test_delivery_problems import CLIENT, invoice_email, problem
from invoicegen.core.exceptions import ConflictError
from webhooks import services as webhooks
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def listening(user):
    webhooks.create_endpoint(user, url="https://hooks.example.com/", event_types=["*"], actor=user)


def sent_events(since: int = 0) -> list[tuple[str, dict]]:
    rows = WebhookDelivery.objects.filter(pk__gt=since).order_by("pk")
    return [(row.event_type, json.loads(row.payload)["data"]) for row in rows]


def test_an_invoices_life_sends_its_events(user, listening):
    invoice = InvoiceFactory(user=user, client_email=CLIENT)
    assert sent_events() == []  # a draft is nobody's business
    billing.finalize_invoice(invoice)
    billing.send_invoice(invoice)
    link, _ = downloads.issue_download_token("invoice", invoice.pk, created_by=user)
    downloads.record_view(link)
    billing.record_payment(invoice, amount=invoice.total - 1, method="card")
    billing.record_payment(invoice, amount=1, method="bank_transfer")
    names = [name for name, _ in sent_events()]
    assert names == [
        "invoice.finalized",
        "invoice.sent",
        "invoice.viewed",
        "payment.received",
        "payment.received",
        "invoice.paid",
    ]
    _, sent = sent_events()[1]
    assert sent["sent_to"] == CLIENT and sent["status"] == "sent"
    _, payment = sent_events()[4]
    assert payment["amount"] == "1.00" and payment["method"] == "bank_transfer"
    assert payment["invoice"]["number"] == invoice.number
    _, paid = sent_events()[5]
    assert (paid["status"], paid["balance_due"], paid["total"]) == (
        "paid",
        "0.00",
        f"{invoice.total:.2f}",
    )


def test_a_void_sends_invoice_voided(user, listening):
    invoice = billing.finalize_invoice(InvoiceFactory(user=user))
    mark = WebhookDelivery.objects.latest("pk").pk
    billing.void_invoice(invoice)
    assert [(name, data["status"]) for name, data in sent_events(mark)] == [
        ("invoice.voided", "void")
    ]


@pytest.mark.parametrize(
    "status, event",
    [(DeliveryStatus.BOUNCED, "email.bounced"), (DeliveryStatus.COMPLAINED, "email.complained")],
)
def test_an_invoice_email_bounce_or_complaint_is_an_email_event(user, listening, status, event):
    invoice = billing.send_invoice(
        billing.finalize_invoice(InvoiceFactory(user=user, client_email=CLIENT))
    )
    invoice_email(invoice)
    mark = WebhookDelivery.objects.latest("pk").pk
    delivery.record_delivery_events([problem(invoice, status, "1", "mailbox unavailable")])
    [(name, data)] = sent_events(mark)
    assert name == event
    assert data["to"] == CLIENT and data["invoice"]["id"] == invoice.pk


def test_subscription_changes_send_their_events(user, listening):
    subscription = billing.activate_subscription(user, plan=Subscription.Plan.PRO)
    billing.renew_subscription(subscription)
    billing.cancel_subscription(subscription)
    names = [(name, data["plan"]) for name, data in sent_events()]
    assert names == [
        ("subscription.activated", "pro"),
        ("subscription.renewed", "pro"),
        ("subscription.cancelled", "pro"),
    ]


def test_a_failed_change_sends_nothing(user, listening):
    draft = InvoiceFactory(user=user)
    with pytest.raises(ConflictError):
        billing.record_payment(draft, amount=1, method="card")  # a draft takes no payment
    assert sent_events() == []
