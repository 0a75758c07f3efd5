"""A client opens the download link from the invoice email in a real browser and downloads
the PDF; the landing page counts the download."""

import pytest

from downloads.tests.helpers import pdf_text

pytestmark = pytest.mark.django_db(transaction=True)


def test_client_downloads_the_invoice_through_the_link_in_the_email(
    emailed_invoice_link, page, tmp_path
):
    invoice, url = emailed_invoice_link

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
