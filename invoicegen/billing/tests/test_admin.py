import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from audit.models import AdminAction
from audit.tests.helpers import actions_after, last_entry_id, only_entry
from emails import delivery
from emails.models import DeliveryStatus, EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.models import Invoice, InvoiceReminder
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    InvoiceReminderFactory,
    SubscriptionFactory,
    invoice_in_status,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:billing_invoice_changelist")


@pytest.fixture
def admin(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def void_selected(admin, *invoices, confirmed: bool = True):
    """The action's POST from the changelist, then (confirmed) the confirmation page's."""
    data = {"action": "void_selected", "_selected_action": [invoice.pk for invoice in invoices]}
    return admin.post(CHANGELIST, {**data, **({"post": "yes"} if confirmed else {})}, follow=True)


def statuses(*invoices) -> list[str]:
    return [Invoice.objects.get(pk=invoice.pk).status for invoice in invoices]


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_changelist_lists_invoices(admin):
    invoices = [InvoiceFactory(client_name="Globex"), invoice_in_status("sent")]

    response = admin.get(CHANGELIST)

    assert response.status_code == 200
    page = response.content.decode()
    assert all(invoice.number in page for invoice in invoices)
    assert "Globex" in page


def test_changelist_search_and_filter_render(admin):
    InvoiceFactory(client_name="Globex")
    InvoiceFactory(client_name="Initech")

    found = admin.get(CHANGELIST, {"q": "Globex", "status__exact": "draft"})

    assert found.status_code == 200
    assert "Globex" in found.content.decode()
    assert "Initech" not in found.content.decode()


def test_change_page_shows_items_and_payments_inline(admin):
    invoice = invoice_in_status("sent")
    services.record_payment(invoice, amount=Decimal("123.45"), method="bank_transfer")

    response = admin.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert invoice.number in page
    assert 'id="items-group"' in page
    assert 'id="payments-group"' in page
    assert "Consulting" in page
    assert "Hosting" in page
    assert "123.45" in page
    assert "Bank Transfer" in page


def test_change_page_shows_the_timeline_and_the_delivery_status(admin):
    invoice = invoice_in_status("sent", client_email="ap@globex.test")
    email = EmailLog.objects.get(resource_id=str(invoice.pk), on_behalf_of__isnull=False)
    EmailLog.objects.filter(pk=email.pk).update(provider_message_id="pm-1")
    delivery.record_delivery_events(
        [delivery.DeliveryEvent("postmark", "e1", DeliveryStatus.BOUNCED, "ap@globex.test",
                                "550 mailbox unavailable", message_id="pm-1")]
    )  # fmt: skip

    response = admin.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))

    page = response.content.decode()
    assert 'class="invoice-timeline"' in page
    rows = page.split('class="invoice-timeline"')[1].split("</table>")[0]
    kinds = re.findall(r"<tr><td>[^<]*</td><td>([a-z_]+)</td>", rows)
    assert kinds == ["created", "finalized", "sent", "bounced"]
    assert "550 mailbox unavailable" in rows
    listed = admin.get(CHANGELIST).content.decode()
    assert "bounced" in listed


def test_void_action_voids_a_finalized_invoice(admin):
    invoice = invoice_in_status("finalized")

    response = void_selected(admin, invoice)

    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID
    assert "Voided 1 invoice(s)." in [
        str(message) for message in get_messages(response.wsgi_request)
    ]


def test_void_action_refuses_a_draft_and_one_with_payments_and_voids_the_others(admin):
    with_payment = invoice_in_status("sent")
    services.record_payment(with_payment, amount=Decimal("1.00"), method="cash")
    draft = InvoiceFactory()
    sent = invoice_in_status("sent")

    response = void_selected(admin, with_payment, draft, sent)

    for invoice in (with_payment, draft, sent):
        invoice.refresh_from_db()
    assert (with_payment.status, draft.status, sent.status) == ("sent", "draft", "void")
    messages = messages_of(response)
    assert any(with_payment.number in message and "payments" in message for message in messages)
    assert any(draft.number in message and "draft" in message for message in messages)
    assert "Voided 1 invoice(s)." in messages


def test_void_action_first_asks_for_confirmation_and_voids_nothing(admin):
    invoices = [invoice_in_status("finalized"), invoice_in_status("sent")]
    mark = last_entry_id()

    response = void_selected(admin, *invoices, confirmed=False)

    assert response.templates[0].name == "admin/billing/invoice/void_selected_confirmation.html"
    page = response.content.decode()
    assert all(invoice.number in page for invoice in invoices)
    assert 'name="post" value="yes"' in page
    assert statuses(*invoices) == ["finalized", "sent"]
    assert actions_after(mark) == []
    assert not AdminAction.objects.exists()


def test_the_confirmation_lists_the_invoices_that_cannot_be_voided(admin):
    user = UserFactory()
    draft = InvoiceFactory(user=user)
    sent = invoice_in_status("sent", user=user)

    response = void_selected(admin, draft, sent, confirmed=False)

    page = response.content.decode()
    refused = page[page.index('id="refused"') :]
    assert f"{draft.number} — {draft.client_name}: Cannot void an invoice that is draft." in refused
    assert sent.number not in refused
    assert f'name="_selected_action" value="{sent.pk}"' in page
    assert f'name="_selected_action" value="{draft.pk}"' not in page


def test_confirming_voids_and_records_one_audit_entry_per_invoice(admin):
    invoices = [invoice_in_status("finalized"), invoice_in_status("sent")]
    mark = last_entry_id()

    void_selected(admin, *invoices)

    assert statuses(*invoices) == ["void", "void"]
    for invoice in invoices:
        entry = only_entry(mark, "invoice.voided", resource_id=str(invoice.pk))
        assert entry.origin == "admin"


def test_void_action_refuses_a_paid_invoice(admin):
    invoice = invoice_in_status("paid")

    void_selected(admin, invoice)

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_invoices_cannot_be_added_or_deleted_in_the_admin(admin):
    invoice = InvoiceFactory()

    assert admin.get(reverse("admin:billing_invoice_add")).status_code == 403
    assert admin.get(reverse("admin:billing_invoice_delete", args=[invoice.pk])).status_code == 403
    assert admin.post(reverse("admin:billing_invoice_delete", args=[invoice.pk])).status_code == 403
    assert Invoice.objects.filter(pk=invoice.pk).exists()


def test_bulk_delete_is_not_offered_for_invoices(admin):
    invoice = InvoiceFactory()

    page = admin.get(CHANGELIST).content.decode()
    response = admin.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [invoice.pk], "post": "yes"}
    )

    assert 'value="delete_selected"' not in page
    assert response.status_code in (200, 302)
    assert Invoice.objects.filter(pk=invoice.pk).exists()


def test_subscription_admin_renders_and_refuses_add_and_delete(admin):
    subscription = SubscriptionFactory()

    assert admin.get(reverse("admin:billing_subscription_changelist")).status_code == 200
    change = reverse("admin:billing_subscription_change", args=[subscription.pk])
    assert admin.get(change).status_code == 200
    assert admin.get(reverse("admin:billing_subscription_add")).status_code == 403
    delete = reverse("admin:billing_subscription_delete", args=[subscription.pk])
    assert admin.get(delete).status_code == 403


REMINDERS = reverse("admin:billing_invoicereminder_changelist")


def test_the_reminders_page_lists_each_step_with_its_invoice_owner_and_outcome(admin):
    owner = UserFactory()
    sent = InvoiceReminderFactory(days=7, invoice=invoice_in_status("sent", user=owner))
    suppressed = InvoiceReminderFactory(
        days=-3,
        outcome=InvoiceReminder.Outcome.SUPPRESSED,
        invoice=invoice_in_status("sent", user=owner, client_email="gone@bounced.example"),
    )

    everything = admin.get(REMINDERS)
    found = admin.get(REMINDERS, {"q": "gone@bounced.example", "outcome__exact": "suppressed"})
    by_number = admin.get(REMINDERS, {"q": sent.invoice.number})

    assert everything.status_code == 200
    rows = everything.content.decode()
    for reminder, step in ((sent, "+7"), (suppressed, "-3")):
        assert reminder.invoice.number in rows
        assert reminder.invoice.user.email in rows
        assert f'<td class="field-step">{step}</td>' in rows
    assert '<td class="field-outcome">Suppressed</td>' in rows
    assert list(found.context["cl"].result_list) == [suppressed]
    assert list(by_number.context["cl"].result_list) == [sent]


def test_reminders_cannot_be_added_changed_or_deleted_in_the_admin(admin):
    reminder = InvoiceReminderFactory(days=7)
    change = reverse("admin:billing_invoicereminder_change", args=[reminder.pk])
    delete = reverse("admin:billing_invoicereminder_delete", args=[reminder.pk])

    assert admin.get(reverse("admin:billing_invoicereminder_add")).status_code == 403
    assert admin.post(change, {"days": "1", "outcome": "skipped"}).status_code == 405
    assert admin.get(delete).status_code == 403
    assert admin.post(delete, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [reminder.pk], "post": "yes"}
    admin.post(REMINDERS, bulk)
    assert InvoiceReminder.objects.filter(
        pk=reminder.pk, days=7, outcome=InvoiceReminder.Outcome.SENT
    ).exists()
