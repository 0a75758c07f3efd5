"""A client reads its invoices in its language (`client_language`): the invoice email, the
reminder, the download page and the PDF, amounts and dates as they are written there, whatever
language the issuer, the request or the worker speaks."""

import datetime
import io
import re
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.utils import translation
from pypdf import PdfReader

from emails.models import EmailLog
from emails.services import deliver_email
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.models import Payment
from invoicegen.billing.pdf import render_invoice_pdf
from invoicegen.billing.tests.factories import InvoiceFactory, SubscriptionFactory
from notifications.models import Notification

pytestmark = pytest.mark.django_db

DUE = datetime.date(2030, 12, 10)
ITEMS = [{"description": "Beratung", "quantity": Decimal("1"), "unit_price": Decimal("1234.56")}]
LINK = re.compile(r"https?://[^/\s]+(/downloads/[A-Za-z0-9_-]+/)")


@pytest.fixture
def german_invoice():
    owner = UserFactory(name="Ada Lovelace", language="en")
    invoice = InvoiceFactory(
        user=owner,
        client_name="Müller GmbH",
        client_language="de",
        currency="EUR",
        due_date=DUE,
        items=ITEMS,
    )
    return services.finalize_invoice(invoice)


def sent_to_the_client(invoice, template: str):
    """The client's email as the worker sends it: under another language than the client's."""
    email = EmailLog.objects.get(template_name=template, resource_id=str(invoice.pk))
    mail.outbox.clear()
    with translation.override("fr"):
        deliver_email(email.pk)
    [message] = mail.outbox
    return email, message


def test_a_german_client_gets_its_invoice_email_in_german(german_invoice):
    services.send_invoice(german_invoice, to="ap@mueller.example")

    email, message = sent_to_the_client(german_invoice, "invoice_notification_client")

    assert email.language == "de"
    assert "Rechnung" in message.subject and german_invoice.number in message.subject
    assert "1.234,56\xa0€" in message.body
    assert "10.12.2030" in message.body
    assert "invoice" not in message.body.lower().replace("invoicegen", "")
    assert 'lang="de"' in message.alternatives[0][0]


def test_a_german_client_gets_its_reminder_in_german(german_invoice, monkeypatch):
    services.send_invoice(german_invoice, to="ap@mueller.example")
    monkeypatch.setattr(services, "owners_today", lambda user: DUE - datetime.timedelta(days=3))
    services.remind_invoice(german_invoice)

    _, message = sent_to_the_client(german_invoice, "invoice_reminder")

    assert "in 3 Tagen" in message.subject  # "due in 3 days", with its plural
    assert "1.234,56\xa0€" in message.body
    assert "reminder" not in message.body.lower()


def test_a_german_clients_download_page_and_pdf_are_in_german(german_invoice):
    services.send_invoice(german_invoice, to="ap@mueller.example")
    _, message = sent_to_the_client(german_invoice, "invoice_notification_client")
    [path] = LINK.findall(message.body)

    page = Client(HTTP_ACCEPT_LANGUAGE="en").get(path).content.decode()
    pdf = Client().post(path).content
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

    assert '<html lang="de">' in page
    assert f"Rechnung {german_invoice.number}" in page and "1.234,56\xa0€" in page
    assert "Download" not in page.replace("/downloads/", "")
    assert "RECHNUNG" in text and "1.234,56" in text and "10.12.2030" in text
    assert "Due date" not in text and "Total" not in text.replace("Gesamt", "")


def test_the_issuers_language_is_the_default_of_a_new_invoice():
    french = UserFactory(language="fr")

    assert InvoiceFactory(user=french).client_language == "fr"
    assert InvoiceFactory(user=french, client_language="es").client_language == "es"


def test_an_english_clients_pdf_stays_english(german_invoice):
    german_invoice.client_language = "en"

    text = " ".join(
        p.extract_text() for p in PdfReader(io.BytesIO(render_invoice_pdf(german_invoice))).pages
    )

    assert "INVOICE" in text and "€1,234.56" in text and "Dec 10, 2030" in text


# The issuer reads in their own language


def test_a_german_owner_is_told_of_a_payment_in_german_with_german_amounts(german_invoice):
    owner = german_invoice.user
    owner.language = "de"
    owner.save(update_fields=["language"])
    services.send_invoice(german_invoice, to="ap@mueller.example")

    services.record_payment(german_invoice, amount=german_invoice.total, method=Payment.Method.CARD)

    notification = Notification.objects.get(user=owner, type="invoice_paid")
    email = notification.emails.get()
    with translation.override("en"):  # whoever reads it, its amount is as the owner writes
        assert "1.234,56\xa0€" in notification.message
    assert email.language == "de" and "Rechnung" in email.subject
    assert "Rechnung" in email.context["title"]  # written in German, in an English request


def test_a_german_subscribers_period_end_is_a_german_date():
    subscriber = UserFactory(language="de")
    subscription = services.cancel_subscription(SubscriptionFactory(user=subscriber))

    notification = Notification.objects.get(type="subscription_cancelled")
    end = subscription.current_period_end

    assert f"{end:%d.%m.%Y}" in notification.params["period_ends"]


def test_a_german_clients_link_to_a_voided_invoice_says_so_in_german(german_invoice):
    services.send_invoice(german_invoice, to="ap@mueller.example")
    _, message = sent_to_the_client(german_invoice, "invoice_notification_client")
    [path] = LINK.findall(message.body)
    services.void_invoice(german_invoice)

    answer = Client(HTTP_ACCEPT_LANGUAGE="en").get(path)

    page = answer.content.decode()
    assert answer.status_code == 410
    assert '<html lang="de">' in page
    assert services.VOIDED_LINK not in page and "storniert" in page.lower()
