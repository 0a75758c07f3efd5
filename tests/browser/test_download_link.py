"""A client opens the download link from the invoice email in a real browser and downloads
the PDF; the landing page counts the download."""

import pytest
from django.core import mail

from downloads.tests.helpers import LINK, pdf_text
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.tests.factories import finalized_invoice

pytestmark = pytest.mark.django_db(transaction=True)

BASE_URL = "https://invoices.example"


def test_client_downloads_the_invoice_through_the_link_in_the_email(
    live_server, page, settings, tmp_path
):
    settings.APP_BASE_URL = BASE_URL
    invoice = finalized_invoice(
        user=UserFactory(name="Jane Issuer"), client_email="ap@globex.example"
    )
    services.send_invoice(invoice)  # commits: the client's email is sent at once
    [body] = [message.body for message in mail.outbox if message.to == ["ap@globex.example"]]
    link = LINK.search(body).group(0)
    url = live_server.url + link.removeprefix(BASE_URL)

    page.goto(url)
    assert invoice.number in page.locator("h1").inner_text()
    assert "Jane Issuer" in page.content()
    assert page.locator("#downloads-left").inner_text() == "5"

    with page.expect_download() as info:
        page.click("#download")
    saved = tmp_path / "invoice.pdf"
    info.value.save_as(saved)
    content = saved.read_bytes()
    assert content.startswith(b"%PDF")
    assert invoice.number in pdf_text(content)
    assert info.value.suggested_filename == f"{invoice.number}.pdf"

    page.reload()
    assert page.locator("#downloads-left").inner_text() == "4"
