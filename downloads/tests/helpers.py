"""Links made as the product makes them, and reading what a link answers."""

import datetime
import io
import re

from django.utils import timezone
from pypdf import PdfReader

from downloads import services
from downloads.models import DownloadEvent, SecureDownloadToken
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.tests.factories import finalized_invoice

# A download link in a text (an email body, an API answer); group 1 is the raw token.
LINK = re.compile(r"https?://[^\s\"<>]+?/downloads/([A-Za-z0-9_-]+)/")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


def invoice_link(invoice=None, **options):
    """A link to a finalized invoice, issued by the service: (invoice, token, raw token)."""
    if invoice is None:
        invoice = finalized_invoice(user=UserFactory(name="Jane Issuer"))
    token, raw = services.issue_download_token(
        "invoice", invoice.pk, created_by=invoice.user, **options
    )
    return invoice, token, raw


def path_of(raw: str, *, slash: bool = True) -> str:
    return f"/downloads/{raw}/" if slash else f"/downloads/{raw}"


def expire(token: SecureDownloadToken, *, ago: datetime.timedelta) -> None:
    """Time passes: the expiry is a column, moved through the ORM."""
    SecureDownloadToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - ago)


def views_of(token: SecureDownloadToken):
    return DownloadEvent.objects.filter(token=token, kind=DownloadEvent.Kind.VIEWED)


def age_views(token: SecureDownloadToken, *, ago: datetime.timedelta) -> None:
    """Time passes: the link's counted views happened `ago` ago."""
    views_of(token).update(created_at=timezone.now() - ago)


def reload(token: SecureDownloadToken) -> SecureDownloadToken:
    return SecureDownloadToken.objects.get(pk=token.pk)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def has_security_headers(response) -> bool:
    return all(value in response.get(name, "") for name, value in SECURITY_HEADERS.items())
