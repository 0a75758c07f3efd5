import io
from decimal import Decimal

import pytest
from pypdf import PdfReader

from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.pdf import render_invoice_pdf
from invoicegen.billing.tests.factories import InvoiceFactory, invoice_in_status

pytestmark = pytest.mark.django_db


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def line(description, quantity="1", unit_price="10.00"):
    return {
        "description": description,
        "quantity": Decimal(quantity),
        "unit_price": Decimal(unit_price),
    }


def test_pdf_shows_number_parties_items_and_total():
    issuer = UserFactory(name="Jane Issuer", email="jane@issuer.example")
    invoice = InvoiceFactory(
        user=issuer,
        client_name="Globex Corporation",
        client_email="ap@globex.example",
        currency="EUR",
        items=[line("Consulting", "2", "150.00"), line("Hosting", "1", "49.99")],
    )

    text = pdf_text(render_invoice_pdf(invoice))

    assert invoice.number in text
    assert "Jane Issuer" in text
    assert "jane@issuer.example" in text
    assert "Globex Corporation" in text
    assert "ap@globex.example" in text
    assert "Consulting" in text
    assert "Hosting" in text
    assert "300.00" in text
    assert "349.99 EUR" in text


def test_pdf_shows_paid_amount_and_balance_due():
    invoice = invoice_in_status("sent")  # total 349.99
    services.record_payment(invoice, amount=Decimal("100.00"), method="cash")
    invoice.refresh_from_db()

    text = pdf_text(render_invoice_pdf(invoice))

    assert "Paid: 100.00 USD" in text
    assert "Balance due: 249.99 USD" in text


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


def test_pdf_of_a_long_invoice_flows_onto_further_pages():
    descriptions = [f"Line {n:03d}" for n in range(1, 121)]
    invoice = InvoiceFactory(items=[line(description) for description in descriptions])

    content = render_invoice_pdf(invoice)

    assert len(PdfReader(io.BytesIO(content)).pages) > 1
    text = pdf_text(content)
    assert [description for description in descriptions if description not in text] == []
    assert "1200.00 USD" in text


def test_pdf_download_is_the_rendered_invoice(api, user):
    invoice = InvoiceFactory(user=user, client_name="Initech", items=[line("<b>Fish & Chips</b>")])

    response = api.get(f"/api/invoices/{invoice.pk}/pdf/", HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    text = pdf_text(response.content)
    assert invoice.number in text
    assert "Initech" in text
    assert "<b>Fish & Chips</b>" in text
    assert "10.00 USD" in text
