import io
import os
import shutil
import subprocess
from decimal import Decimal

import pytest
from PIL import Image
from pypdf import PdfReader

from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.pdf import render_invoice_pdf
from invoicegen.billing.tests.factories import InvoiceFactory, invoice_in_status

pytestmark = pytest.mark.django_db


def pdf_pages(content: bytes) -> list[str]:
    """Each page's text, its words joined by single spaces (the PDF places them, not lines)."""
    return [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(content)).pages]


def pdf_text(content: bytes) -> str:
    return "\n".join(pdf_pages(content))


def line(description, quantity="1", unit_price="10.00"):
    return {
        "description": description,
        "quantity": Decimal(quantity),
        "unit_price": Decimal(unit_price),
    }


def png_logo(size=(240, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "#1f4e79").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def issuer():
    user = UserFactory(name="Jane Issuer", email="jane@issuer.example")
    services.update_business_profile(
        user,
        legal_name="Issuer Studio Ltd",
        address="12 Harbour Street\nBristol BS1 4ST\nUnited Kingdom",
        tax_id="GB123456789",
        payment_instructions="Bank transfer to IBAN GB33 BUKB 2020 1555 5555 55",
        notes="Payment within 30 days. Thank you for your business.",
        logo=png_logo(),
    )
    return user


def test_pdf_prints_every_block_of_an_issued_invoice(issuer):
    invoice = services.finalize_invoice(
        InvoiceFactory(
            user=issuer,
            client_name="Globex Corporation",
            client_email="ap@globex.example",
            client_address="1 Globex Way\nCypress Creek",
            currency="EUR",
            tax_rate=Decimal("20"),
            items=[line("Consulting", "2", "150.00"), line("Hosting", "1", "49.99")],
        )
    )

    content = render_invoice_pdf(invoice)
    text = pdf_text(content)

    issuer_block = ["Issuer Studio Ltd", "12 Harbour Street", "Bristol BS1 4ST", "United Kingdom"]
    issuer_block += ["Tax ID: GB123456789", "jane@issuer.example"]
    client_block = ["Bill to", "Globex Corporation", "1 Globex Way", "Cypress Creek"]
    client_block += ["ap@globex.example"]
    issued = f"{invoice.finalized_at:%b} {invoice.finalized_at.day}, {invoice.finalized_at.year}"
    dates = [f"Invoice number {invoice.number}", f"Issue date {issued}"]
    dates += [f"Due date {invoice.due_date:%b} {invoice.due_date.day}, {invoice.due_date.year}"]
    lines = ["Description Quantity Unit price Amount", "Consulting 2 €150.00 €300.00"]
    lines += ["Hosting 1 €49.99 €49.99"]
    totals = ["Subtotal €349.99", "Tax (20%) €70.00", "Total €419.99", "Balance due €419.99"]
    others = ["How to pay", "IBAN GB33 BUKB 2020 1555 5555 55", "Notes", "Thank you for"]
    others += ["Page 1 of 1"]
    expected = issuer_block + client_block + dates + lines + totals + others
    assert [part for part in expected if part not in text] == []
    # The internal lifecycle is not the client's business.
    assert "finalized" not in text.lower()
    assert "status" not in text.lower()
    assert len(PdfReader(io.BytesIO(content)).pages[0].images) == 1  # the logo


def test_pdf_of_sixty_items_repeats_the_header_and_numbers_every_page(issuer):
    descriptions = [f"Line item {n:02d}" for n in range(1, 61)]
    invoice = InvoiceFactory(user=issuer, items=[line(text, "1", "10.00") for text in descriptions])

    pages = pdf_pages(render_invoice_pdf(invoice))

    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert "Description Quantity Unit price Amount" in text
        assert f"Page {number} of {len(pages)}" in text
        assert f"Invoice {invoice.number}" in text
    everything = "\n".join(pages)
    assert [text for text in descriptions if f"{text} 1 $10.00 $10.00" not in everything] == []
    assert "Total $600.00" in pages[-1]
    assert "Total $600.00" not in pages[0]


def test_pdf_of_a_paid_invoice_is_stamped_and_shows_nothing_due():
    invoice = invoice_in_status("paid")  # total 349.99

    text = pdf_text(render_invoice_pdf(invoice))

    assert "PAID" in text
    assert "Amount paid $349.99" in text
    assert "Balance due $0.00" in text
    assert "How to pay" not in text


def test_pdf_of_a_void_invoice_is_stamped_and_claims_no_balance(issuer):
    invoice = services.void_invoice(services.finalize_invoice(InvoiceFactory(user=issuer)))

    text = pdf_text(render_invoice_pdf(invoice))

    assert "VOID" in text
    assert "Balance due" not in text
    assert "How to pay" not in text
    assert "Total $349.99" in text


def test_pdf_of_a_draft_has_no_stamp():
    text = pdf_text(render_invoice_pdf(InvoiceFactory()))

    assert "PAID" not in text
    assert "VOID" not in text
    assert "Balance due $349.99" in text


@pytest.mark.parametrize(
    ("currency", "unit_price", "printed"),
    [
        ("USD", "1250.00", "$1,250.00"),
        ("GBP", "1250.00", "£1,250.00"),
        ("JPY", "1250.00", "¥1,250"),  # yen have no minor unit
        ("JPY", "1250.50", "¥1,251"),  # a line's amount is whole yen
        ("KWD", "1250.00", "KWD1,250.000"),
    ],
)
def test_pdf_formats_amounts_per_currency(currency, unit_price, printed):
    invoice = InvoiceFactory(currency=currency, items=[line("Design", "1", unit_price)])

    assert f"Total {printed}" in pdf_text(render_invoice_pdf(invoice))


def test_an_issued_invoice_keeps_the_issuer_it_was_issued_by(issuer):
    issued = services.finalize_invoice(InvoiceFactory(user=issuer))
    draft = InvoiceFactory(user=issuer)

    services.update_business_profile(issuer, legal_name="Renamed Holdings", tax_id="GB999")

    issued_text = pdf_text(render_invoice_pdf(issued))
    assert "Issuer Studio Ltd" in issued_text
    assert "Tax ID: GB123456789" in issued_text
    draft_text = pdf_text(render_invoice_pdf(draft))
    assert "Renamed Holdings" in draft_text
    assert "Tax ID: GB999" in draft_text


def test_pdf_without_a_business_profile_names_the_account():
    owner = UserFactory(name="Sam Sole", email="sam@sole.example")

    text = pdf_text(render_invoice_pdf(InvoiceFactory(user=owner)))

    assert "Sam Sole" in text
    assert "sam@sole.example" in text
    assert "Tax ID" not in text


def test_pdf_of_blocks_taller_than_a_page_goes_on_over_the_next():
    invoice = InvoiceFactory(
        client_address="\n".join(["Floor"] * 500)[:1000],
        items=[line("\n".join(["Step"] * 250)[:500]), line("Last line")],
    )

    pages = pdf_pages(render_invoice_pdf(invoice))

    assert len(pages) > 2
    assert "Total $20.00" in pages[-1]


def test_pdf_prints_markup_in_user_text_literally():
    invoice = InvoiceFactory(
        client_name="<i>O'Brien</i> & Sons",
        items=[line("<b>Fish & Chips</b>"), line('Tea "Earl Grey" <br/> & cake')],
    )

    text = pdf_text(render_invoice_pdf(invoice))

    assert "<b>Fish & Chips</b>" in text
    assert 'Tea "Earl Grey" <br/> & cake' in text
    assert "<i>O'Brien</i> & Sons" in text


def test_pdf_keeps_accented_latin_letters_in_client_names():
    """Clients across Europe: a name must not turn into placeholder boxes on the invoice."""
    invoice = InvoiceFactory(client_name="Zakład Łódź Sp. z o.o.", items=[line("Usługa")])

    text = pdf_text(render_invoice_pdf(invoice))

    assert "Zakład Łódź Sp. z o.o." in text
    assert "Usługa" in text


def test_first_page_drawn_as_a_picture_has_content_where_the_blocks_are(issuer, tmp_path):
    """What a person sees, without a browser: page 1 rasterised by poppler's pdftoppm."""
    pdftoppm = shutil.which("pdftoppm")
    if not pdftoppm:
        if os.environ.get("CI"):
            pytest.fail("poppler-utils is not installed (.ci/run installs it)")
        pytest.skip("pdftoppm is not installed: apt-get install poppler-utils")
    invoice = services.finalize_invoice(InvoiceFactory(user=issuer, tax_rate=Decimal("20")))
    source = tmp_path / "invoice.pdf"
    source.write_bytes(render_invoice_pdf(invoice))

    subprocess.run(
        [pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", source, tmp_path / "p"],
        check=True,
        timeout=60,
    )

    with Image.open(tmp_path / "p.png") as picture:
        gray = picture.convert("L")

    def share_inked(top: float, bottom: float) -> float:
        band = gray.crop((0, int(top * gray.height), gray.width, int(bottom * gray.height)))
        return sum(band.histogram()[:200]) / (band.width * band.height)

    assert 0.01 < share_inked(0, 1) < 0.5  # neither blank nor a solid block
    assert share_inked(0, 0.15) > 0.01  # the logo and title
    assert share_inked(0.15, 0.35) > 0.005  # the issuer, client and dates
    assert share_inked(0.9, 1) < 0.01  # only the footer's line of small text


def test_pdf_download_is_the_rendered_invoice(api, user):
    invoice = InvoiceFactory(user=user, client_name="Initech", items=[line("<b>Fish & Chips</b>")])

    response = api.get(f"/api/invoices/{invoice.pk}/pdf/", HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    text = pdf_text(response.content)
    assert invoice.number in text
    assert "Initech" in text
    assert "<b>Fish & Chips</b>" in text
    assert "Total $10.00" in text
