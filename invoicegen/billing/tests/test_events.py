"""Billing's domain events: each service change is exactly one entry, named by the service and
holding the change's diffs; what the owner and the client are told; and subscribers, who hear
of an event once it is committed."""

import pytest
from django.db import transaction

from audit.registry import domain_event
from audit.services import record_event
from audit.tests.helpers import actions_after, entries_after, last_entry_id, only_entry
from downloads import services as downloads
from emails.models import EmailLog
from emails.services import queue_email
from invoicegen.billing import events
from invoicegen.billing import services as billing
from invoicegen.billing.models import Subscription
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    SubscriptionFactory,
    invoice_in_status,
)
from invoicegen.core import events as domain_events
from notifications.models import Notification

pytestmark = pytest.mark.django_db


class Rollback(Exception):
    pass


@pytest.fixture
def heard():
    """The events a subscriber to every event hears, in order."""
    received = []
    domain_events.subscribe("*", received.append)
    yield received
    domain_events.unsubscribe("*", received.append)


# One entry per change, named by the service


def test_a_void_is_one_invoice_voided_entry_with_the_change():
    invoice = billing.finalize_invoice(InvoiceFactory())
    mark = last_entry_id()

    billing.void_invoice(invoice, actor=invoice.user)

    entry = only_entry(mark, "invoice.voided")
    assert entry.metadata["changes"]["status"] == ["finalized", "void"]
    assert entry.user_id == invoice.user_id
    assert actions_after(mark) == ["invoice.voided"]


def test_a_resend_is_an_invoice_sent_though_the_status_stays():
    invoice = invoice_in_status("sent")
    mark = last_entry_id()

    billing.send_invoice(invoice, to="boss@acme.example")

    entry = only_entry(mark, "invoice.sent")
    assert set(entry.metadata["changes"]) == {"sent_at", "sent_to", "updated_at"}
    assert entry.metadata["changes"]["sent_to"] == [invoice.client_email, "boss@acme.example"]
    assert entry.metadata["to"] == "boss@acme.example"
    assert actions_after(mark, resource_type="invoice") == ["invoice.sent"]


def test_what_no_event_names_keeps_its_plain_entry_in_the_same_transaction(user):
    mark = last_entry_id()

    invoice = InvoiceFactory(user=user)  # create_invoice: the invoice's event, and two lines

    assert actions_after(mark) == [
        "invoice.created",
        "invoice_item.created",
        "invoice_item.created",
    ]
    created = only_entry(mark, "invoice.created")
    assert created.metadata["changes"]["number"] == [None, invoice.number]


def test_a_failed_service_leaves_no_entry_and_no_event(heard):
    invoice = invoice_in_status("paid")
    mark = last_entry_id()

    with pytest.raises(Exception, match="Cannot void"):
        billing.void_invoice(invoice)

    assert actions_after(mark) == []
    assert heard == []


# Who is told


def test_finalizing_notifies_and_emails_the_owner_only():
    invoice = InvoiceFactory()

    billing.finalize_invoice(invoice)

    notification = Notification.objects.get()
    assert (notification.user, notification.type) == (invoice.user, "invoice_finalized")
    assert notification.title == f"Invoice {invoice.number} finalized"
    assert (notification.resource_type, notification.resource_id) == ("invoice", str(invoice.pk))
    assert notification.params["total"] == f"${invoice.total}"
    [email] = EmailLog.objects.all()
    assert (email.notification, email.to_email) == (notification, invoice.user.email)
    assert email.template_name == "invoice_notification_user"
    assert email.subject == f"Invoice {invoice.number} is finalized"


def test_sending_tells_the_owner_and_emails_the_client_at_the_given_address():
    invoice = invoice_in_status("finalized", client_email="billing@acme.example")

    billing.send_invoice(invoice, to="boss@acme.example")

    notification = Notification.objects.get(type="invoice_sent")
    assert notification.message == "Sent to boss@acme.example."
    client = EmailLog.objects.get(template_name="invoice_notification_client")
    assert client.to_email == "boss@acme.example"
    assert client.user is None  # the client is not one of our users
    assert client.on_behalf_of == invoice.user  # it counts against the owner's quota
    assert (client.resource_type, client.resource_id) == ("invoice", str(invoice.pk))
    owner = EmailLog.objects.get(
        template_name="invoice_notification_user", notification=notification
    )
    assert owner.to_email == invoice.user.email


def test_a_payment_in_full_tells_the_owner():
    invoice = invoice_in_status("sent", client_name="Acme Ltd")

    billing.record_payment(invoice, amount=invoice.total, method="card")

    notification = Notification.objects.get(type="invoice_paid")
    assert notification.message == f"Acme Ltd paid ${invoice.total} in full."


def test_the_owner_is_told_of_the_first_view_only_in_the_app():
    invoice = invoice_in_status("sent", client_name="Acme Ltd")
    link, _ = downloads.issue_download_token("invoice", invoice.pk, created_by=invoice.user)
    other_link, _ = downloads.issue_download_token("invoice", invoice.pk, created_by=invoice.user)

    downloads.record_view(link)
    downloads.record_view(other_link)

    notification = Notification.objects.get(type="invoice_viewed")
    assert (notification.user, notification.title) == (
        invoice.user,
        f"Invoice {invoice.number} viewed",
    )
    assert notification.message == "Acme Ltd opened it for the first time."
    assert (notification.resource_type, notification.resource_id) == ("invoice", str(invoice.pk))
    assert not EmailLog.objects.filter(notification=notification).exists()


def test_the_owner_is_told_of_the_first_download_only():
    invoice = invoice_in_status("sent", client_name="Acme Ltd")
    _, raw = downloads.issue_download_token("invoice", invoice.pk, created_by=invoice.user)

    for _ in range(3):
        downloads.redeem_token(raw)

    notification = Notification.objects.get(type="invoice_downloaded")
    assert notification.title == f"Invoice {invoice.number} downloaded"
    assert notification.message == "Acme Ltd downloaded it for the first time."
    assert not Notification.objects.filter(type="invoice_viewed").exists()


@pytest.mark.parametrize(
    ("change", "kind", "title"),
    [
        (
            billing.cancel_subscription,
            "subscription_cancelled",
            "Your pro subscription is cancelled",
        ),
        (billing.renew_subscription, "subscription_renewed", "Your pro subscription is renewed"),
    ],
)
def test_a_subscription_change_tells_the_subscriber(change, kind, title):
    subscription = change(SubscriptionFactory(plan=Subscription.Plan.PRO))

    notification = Notification.objects.get(type=kind)
    end = subscription.current_period_end
    assert (notification.user, notification.title) == (subscription.user, title)
    assert notification.message == f"Current period ends {end:%b} {end.day}, {end.year}."
    [email] = EmailLog.objects.filter(notification=notification)
    assert (email.template_name, email.subject) == ("subscription_notification", title)


def test_an_expiry_is_one_subscription_expired_event_of_no_one(
    heard, django_capture_on_commit_callbacks
):
    subscription = SubscriptionFactory(plan=Subscription.Plan.PRO)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        assert billing.expire_subscriptions(now=subscription.current_period_end) == 1

    entry = only_entry(mark, "subscription.expired")
    assert (entry.user_id, entry.metadata["plan"]) == (None, "pro")
    assert entry.metadata["changes"]["status"] == ["active", "expired"]
    assert [(e.name, e.resource_id) for e in heard] == [
        ("subscription.expired", str(subscription.pk))
    ]


# Subscribers


def test_subscribers_hear_an_event_after_commit(heard, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory()

    with django_capture_on_commit_callbacks() as callbacks:
        billing.finalize_invoice(invoice, actor=invoice.user)
        assert heard == []  # not before the transaction commits

    for callback in callbacks:
        callback()

    [event] = heard
    entry = only_entry(0, "invoice.finalized")
    assert (event.name, event.resource_type, event.resource_id) == (
        "invoice.finalized",
        "invoice",
        str(invoice.pk),
    )
    assert (event.actor_id, event.entry_id) == (invoice.user_id, entry.id)
    assert event.params["invoice_number"] == invoice.number


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("invoice.created", lambda invoice: None),
        ("invoice.updated", lambda invoice: billing.update_invoice(invoice, notes="Net 30")),
        ("invoice.deleted", billing.delete_draft_invoice),
        ("invoice.finalized", billing.finalize_invoice),
    ],
)
def test_each_change_of_a_draft_is_heard_once_as_its_event(
    heard, django_capture_on_commit_callbacks, name, change
):
    with django_capture_on_commit_callbacks(execute=True):
        invoice = InvoiceFactory()
        change(invoice)

    [event] = [event for event in heard if event.name == name]
    assert (event.resource_type, event.resource_id) == ("invoice", str(invoice.pk))


def test_a_rolled_back_event_reaches_no_subscriber(heard, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory()

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(Rollback),
        transaction.atomic(),
    ):
        billing.finalize_invoice(invoice)
        raise Rollback

    assert heard == []


def test_a_failing_subscriber_stops_neither_the_others_nor_the_caller(
    heard, django_capture_on_commit_callbacks, caplog
):
    def broken(event):
        raise RuntimeError("subscriber down")

    invoice = InvoiceFactory()
    heard.clear()
    domain_events.subscribe("invoice.", broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            billing.finalize_invoice(invoice)
    finally:
        domain_events.unsubscribe("invoice.", broken)

    assert [event.name for event in heard] == ["invoice.finalized"]
    assert "subscriber down" in caplog.text


def test_a_prefix_subscriber_hears_only_its_events(django_capture_on_commit_callbacks):
    invoices = []
    domain_events.subscribe("subscription.", invoices.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            billing.finalize_invoice(InvoiceFactory())
            billing.cancel_subscription(SubscriptionFactory())
    finally:
        domain_events.unsubscribe("subscription.", invoices.append)

    assert [event.name for event in invoices] == ["subscription.cancelled"]


# A new event is one function


@domain_event("invoice.thanks_sent", "Thanks for {target} sent to {to}")
def invoice_thanks_sent(invoice, *, to: str, actor) -> None:
    params = {**events.invoice_params(invoice), "to": to, "issuer": invoice.user.get_full_name()}
    record_event("invoice.thanks_sent", target=invoice, actor=actor, params=params)
    queue_email("invoice_notification_client", to=to, context=params, on_behalf_of=invoice.user)


def test_a_new_event_needs_nothing_from_the_backbone(heard, django_capture_on_commit_callbacks):
    invoice = invoice_in_status("sent")
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        invoice_thanks_sent(invoice, to=invoice.client_email, actor=invoice.user)

    entry = only_entry(mark, "invoice.thanks_sent")
    assert (
        entry.description == f"Thanks for invoice {invoice.number} sent to {invoice.client_email}"
    )
    assert [event.name for event in heard] == ["invoice.thanks_sent"]
    assert EmailLog.objects.filter(to_email=invoice.client_email).count() == 2
    assert entries_after(mark).count() == 2  # the event, and the download link of its email
