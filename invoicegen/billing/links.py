"""What billing tells the downloads and emails apps about invoices: how an invoice looks on a
download landing page, how its file is made, and the link in the client's email."""

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _

from downloads import services as downloads
from emails.services import Withdrawn
from invoicegen.billing.models import Invoice
from invoicegen.billing.money import format_day, format_money
from invoicegen.billing.pdf import render_invoice_pdf


def describe_invoice(invoice_id: str) -> dict:
    """The invoice as its client's download page shows it, in the client's language."""
    invoice = Invoice.objects.select_related("user").get(pk=invoice_id)
    with translation.override(invoice.client_language):
        return {
            "language": invoice.client_language,
            "title": _("Invoice %(number)s") % {"number": invoice.number},
            "fields": [
                (_("Issued by"), invoice.issuer.get("name") or invoice.user.get_full_name()),
                (_("Billed to"), invoice.client_name),
                (_("Total"), format_money(invoice.total, invoice.currency)),
                (_("Due"), format_day(invoice.due_date)),
            ],
        }


def render_invoice_file(invoice_id: str) -> tuple[str, bytes]:
    invoice = Invoice.objects.select_related("user").get(pk=invoice_id)
    return f"{invoice.number}.pdf", render_invoice_pdf(invoice)


def _client_link(email, *, withdrawn_when: tuple[str, ...]) -> dict:
    """A download link for the client's email about an invoice, unless the invoice went into
    one of `withdrawn_when` before the email left. The invoice row is locked as void_invoice
    and record_payment lock it, so a link is either made first (and a void withdraws it) or
    not at all."""
    invoice = Invoice.objects.select_for_update().get(pk=email.context["invoice_id"])
    if invoice.status in withdrawn_when:
        raise Withdrawn(f"Invoice {invoice.number} is {invoice.status}: this email is not sent.")
    _, raw = downloads.issue_email_download_token(
        "invoice", invoice.pk, email=email, created_by=invoice.user
    )
    return {"download_url": downloads.link_url(raw)}


@transaction.atomic
def make_client_download_link(email) -> dict:
    """The link in the client's email, made when it is first sent and the same at every retry
    of that email; sending the invoice again makes a new email, with a new link. An invoice
    voided before its email left is not sent at all."""
    return _client_link(email, withdrawn_when=(Invoice.Status.VOID,))


@transaction.atomic
def make_reminder_download_link(email) -> dict:
    """The link in a reminder, made as the invoice's own; a reminder still waiting when its
    invoice is paid or voided is not sent at all."""
    return _client_link(email, withdrawn_when=(Invoice.Status.PAID, Invoice.Status.VOID))
