"""What billing tells the downloads and emails apps about invoices: how an invoice looks on a
download landing page, how its file is made, and the link in the client's email."""

from downloads import services as downloads
from downloads.models import SecureDownloadToken
from invoicegen.billing.models import Invoice
from invoicegen.billing.pdf import render_invoice_pdf


def describe_invoice(invoice_id: str) -> dict:
    invoice = Invoice.objects.select_related("user").get(pk=invoice_id)
    return {
        "title": f"Invoice {invoice.number}",
        "fields": [
            ("Issued by", invoice.user.get_full_name()),
            ("Billed to", invoice.client_name),
            ("Total", f"{invoice.total} {invoice.currency}"),
            ("Due", invoice.due_date.isoformat()),
        ],
    }


def render_invoice_file(invoice_id: str) -> tuple[str, bytes]:
    invoice = Invoice.objects.select_related("user").get(pk=invoice_id)
    return f"{invoice.number}.pdf", render_invoice_pdf(invoice)


def make_client_download_link(email) -> dict:
    """A fresh link for each sending of the client's email: the token exists only in the
    message. The unused links of earlier sendings to that client are withdrawn; one the
    client already used stays valid."""
    invoice = Invoice.objects.get(pk=email.context["invoice_id"])
    unused = SecureDownloadToken.objects.filter(
        resource_type="invoice",
        resource_id=str(invoice.pk),
        email__template_name=email.template_name,
        email__to_email=email.to_email,
        download_count=0,
        revoked_at__isnull=True,
    )
    for token in unused:
        downloads.revoke_token(token)
    _, raw = downloads.issue_download_token(
        "invoice", invoice.pk, created_by=invoice.user, email=email
    )
    return {"download_url": downloads.link_url(raw)}
