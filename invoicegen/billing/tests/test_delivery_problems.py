"""The owner of an invoice hears, once, that its email to the client bounced or drew a
complaint; the words are billing's, the event comes from the email backbone."""

import pytest
from django.utils import translation

from audit.models import AuditLog
from emails import delivery
from emails import services as emails
from emails.models import DeliveryStatus, EmailLog
from emails.tests.conftest import smtp  # noqa: F401 (the fixture, found by its name)
from invoicegen.billing.tests.factories import invoice_in_status
from notifications.models import Notification

pytestmark = pytest.mark.django_db

CLIENT = "ap@globex.test"


def client_email(invoice) -> EmailLog:
    return EmailLog.objects.get(
        resource_type="invoice",
        resource_id=str(invoice.pk),
        template_name="invoice_notification_client",
    )


def invoice_email(invoice) -> EmailLog:
    email = client_email(invoice)
    EmailLog.objects.filter(pk=email.pk).update(provider_message_id=f"pm-{invoice.pk}")
    return email


def problem(invoice, status, event_id: str, description="mailbox unavailable"):
    return delivery.DeliveryEvent(
        provider="postmark",
        event_id=event_id,
        status=status,
        recipient=CLIENT,
        description=description,
        message_id=f"pm-{invoice.pk}",
    )


def owner_notifications(invoice):
    return Notification.objects.filter(user=invoice.user, type="invoice_delivery_failed")


def test_a_bounce_tells_the_owner_once_in_the_invoices_words():
    invoice = invoice_in_status("sent", client_email=CLIENT)
    invoice_email(invoice)
    bounce = problem(invoice, DeliveryStatus.BOUNCED, "1")
    for _ in range(50):
        delivery.record_delivery_events([bounce])
    # A complaint after the bounce, and a late delivery, tell nothing more.
    delivery.record_delivery_events([problem(invoice, DeliveryStatus.COMPLAINED, "2")])
    delivery.record_delivery_events([problem(invoice, DeliveryStatus.DELIVERED, "3")])
    [notification] = owner_notifications(invoice)
    assert notification.title == (
        f"Your invoice {invoice.number} to {CLIENT} bounced: mailbox unavailable"
    )
    assert (notification.resource_type, notification.resource_id) == ("invoice", str(invoice.pk))
    entries = AuditLog.objects.filter(action="invoice.delivery_failed")
    assert [(e.resource_id, e.metadata["problem"]) for e in entries] == [
        (str(invoice.pk), "bounced")
    ]


def test_a_complaint_tells_the_owner():
    invoice = invoice_in_status("sent", client_email=CLIENT)
    invoice_email(invoice)
    delivery.record_delivery_events([problem(invoice, DeliveryStatus.COMPLAINED, "c", "")])
    [notification] = owner_notifications(invoice)
    assert notification.title == f"Your invoice {invoice.number} to {CLIENT} complained: complained"


def test_the_problem_reads_in_the_owners_language():
    invoice = invoice_in_status("sent", client_email=CLIENT)
    invoice_email(invoice)
    delivery.record_delivery_events([problem(invoice, DeliveryStatus.COMPLAINED, "c", "")])
    [notification] = owner_notifications(invoice)

    with translation.override("de"):
        title = notification.title

    dash = "\N{EN DASH}"
    assert (
        title == f"Ihre Rechnung {invoice.number} an {CLIENT} {dash} als Spam gemeldet: complained"
    )


def test_a_soft_bounce_or_a_delivery_tells_nobody():
    invoice = invoice_in_status("sent", client_email=CLIENT)
    invoice_email(invoice)
    delivery.record_delivery_events(
        [
            problem(invoice, DeliveryStatus.SOFT_BOUNCED, "s"),
            problem(invoice, DeliveryStatus.DELIVERED, "d"),
        ]
    )
    assert not owner_notifications(invoice).exists()


def test_a_5xx_refusal_over_smtp_tells_the_owner(request):
    server = request.getfixturevalue("smtp")  # the emails' real SMTP server (aiosmtpd)
    server.answer("550 5.1.1 mailbox unavailable", stage="RCPT", to=CLIENT)
    invoice = invoice_in_status("sent", client_email=CLIENT)
    email = client_email(invoice)
    emails.deliver_email(email.pk)
    [notification] = owner_notifications(invoice)
    assert notification.title.startswith(f"Your invoice {invoice.number} to {CLIENT} bounced: 550")
    assert EmailLog.objects.get(pk=email.pk).delivery_status == DeliveryStatus.BOUNCED
