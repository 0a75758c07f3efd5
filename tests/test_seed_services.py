"""The service calls of the original description, mapped onto today's functions."""

import pytest
from django.core import mail

from audit import context as audit_context
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.tests.factories import InvoiceFactory
from invoicegen.seed_services import AuditService, EmailService, NotificationService

pytestmark = pytest.mark.django_db


def assert_resource(entry, resource_type: str, resource_id) -> None:
    assert (entry.resource_type, entry.resource_id) == (resource_type, str(resource_id))


def test_log_user_login_records_the_given_client():
    user = UserFactory()
    mark = last_entry_id()

    entry = AuditService.log_user_login(user.id, ip_address="198.51.100.4", user_agent="curl/8")

    assert entry == only_entry(mark, "user.login")
    assert (entry.user_id, entry.user_email) == (user.id, user.email)
    assert (entry.ip_address, entry.user_agent) == ("198.51.100.4", "curl/8")
    assert_resource(entry, "user", user.pk)


def test_log_user_login_keeps_the_request_ip_when_given_none_or_garbage():
    user = UserFactory()

    with audit_context.bind(request_context(ip_address="203.0.113.10")):
        entries = [
            AuditService.log_user_login(user.id),
            AuditService.log_user_login(user.id, ip_address="not an ip", user_agent="a\r\nb"),
        ]

    assert [e.ip_address for e in entries] == ["203.0.113.10", "203.0.113.10"]
    assert entries[1].user_agent == "a  b"


@pytest.mark.parametrize(
    ("call", "action"),
    [
        (AuditService.log_invoice_created, "invoice.created"),
        (AuditService.log_invoice_finalized, "invoice.finalized"),
        (AuditService.log_invoice_sent, "invoice.sent"),
        (AuditService.log_invoice_paid, "invoice.paid"),
    ],
)
def test_seed_invoice_calls_record_one_entry_for_the_invoice(call, action):
    user = UserFactory()
    mark = last_entry_id()

    entry = call(user.id, 42, "INV-2030-042")

    assert entry == only_entry(mark, action)
    assert_resource(entry, "invoice", 42)
    assert (entry.user_id, entry.metadata) == (user.id, {"invoice_number": "INV-2030-042"})


def test_generic_log_records_any_action_with_its_registry_category():
    invoice = InvoiceFactory()

    with audit_context.bind(request_context()):
        entry = AuditService.log("invoice.sent", target=invoice, metadata={"to": "a@b.test"})

    assert (entry.action, entry.category) == ("invoice.sent", "invoice")
    assert_resource(entry, "invoice", invoice.pk)
    assert invoice.number in entry.description
    assert entry.ip_address == "203.0.113.10"


def test_seed_lookups_return_a_users_and_a_resources_entries():
    user = UserFactory()
    invoice = InvoiceFactory(user=user)
    own = AuditService.log_invoice_sent(user.id, invoice.id, invoice.number)
    other = AuditLogFactory(target=("invoice", invoice.pk + 1000))

    users = set(AuditService.get_user_logs(user.id))
    resources = set(AuditService.get_resource_logs("invoice", invoice.pk))

    assert own in users
    assert other not in users
    assert own in resources
    assert other not in resources
    assert {e.resource_id for e in resources} == {str(invoice.pk)}


def test_create_notification_keeps_the_given_text_and_emails_when_asked(
    django_capture_on_commit_callbacks,
):
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        notification = NotificationService.create_notification(
            user_id=user.id,
            notification_type="invoice_finalized",
            title="Invoice Finalized",
            message="Your invoice has been finalized and is ready to send.",
            resource_type="invoice",
            resource_id=7,
            send_email=True,
        )

    assert (notification.type, notification.title) == ("invoice_finalized", "Invoice Finalized")
    assert notification.message == "Your invoice has been finalized and is ready to send."
    assert (notification.resource_type, notification.resource_id) == ("invoice", "7")
    assert [m.to for m in mail.outbox] == [[user.email]]


def test_notify_invoice_finalized_notifies_the_owner():
    invoice = InvoiceFactory()

    notification = NotificationService.notify_invoice_finalized(invoice)

    assert (notification.user, notification.type) == (invoice.user, "invoice_finalized")
    assert notification.title == f"Invoice {invoice.number} finalized"


def test_send_invoice_notification_queues_the_owners_and_the_clients_emails():
    invoice = InvoiceFactory()

    owner, client = EmailService.send_invoice_notification(
        invoice.user, invoice, "invoice_sent", client_email="billing@acme.example"
    )

    assert (owner.to_email, owner.template_name) == (
        invoice.user.email,
        "invoice_notification_user",
    )
    assert (client.to_email, client.on_behalf_of) == ("billing@acme.example", invoice.user)
    assert EmailLog.objects.count() == 2
