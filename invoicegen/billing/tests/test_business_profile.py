"""The issuer's business profile and what an invoice takes from it: services and API."""

import base64
import io
import os
from decimal import Decimal

import pytest
from PIL import Image

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import links, services
from invoicegen.billing.api.serializers import MAX_LOGO_BYTES
from invoicegen.billing.models import BusinessProfile
from invoicegen.billing.tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db

PROFILE = "/api/business-profile/"


def image_bytes(kind="PNG", size=(120, 40), noise=False) -> bytes:
    picture = Image.new("RGB", size, "#1f4e79")
    if noise:  # incompressible pixels, to make a large file
        picture = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    picture.save(buffer, format=kind)
    return buffer.getvalue()


def data_url(content: bytes, kind="image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(content).decode()}"


# Services


def test_update_business_profile_makes_it_then_changes_it_with_one_entry_each():
    user = UserFactory()
    mark = last_entry_id()

    services.update_business_profile(user, legal_name="Acme Studio", tax_id="DE123", actor=user)
    services.update_business_profile(user, tax_id="DE456", actor=user)

    assert actions_after(mark) == ["business_profile.updated", "business_profile.updated"]
    last = only_entry(
        mark, "business_profile.updated", metadata__changes__tax_id=["DE123", "DE456"]
    )
    assert last.user_id == user.id
    assert BusinessProfile.objects.get(user=user).tax_id == "DE456"


def test_a_logo_change_is_recorded_by_size_and_hash_not_by_its_bytes():
    user = UserFactory()
    services.update_business_profile(user, legal_name="Acme Studio")
    logo = image_bytes()
    mark = last_entry_id()

    services.update_business_profile(user, logo=logo, actor=user)

    entry = only_entry(mark, "business_profile.updated")
    old, new = entry.metadata["changes"]["logo"]
    assert old == ""
    assert new.startswith(f"{len(logo)} bytes, sha256 ")


def test_a_new_invoice_starts_with_the_profiles_notes_unless_given_its_own():
    user = UserFactory()
    services.update_business_profile(user, notes="Net 30. Late payments accrue 2% a month.")

    assert InvoiceFactory(user=user).notes == "Net 30. Late payments accrue 2% a month."
    assert InvoiceFactory(user=user, notes="").notes == ""
    assert InvoiceFactory(user=user, notes="Thanks!").notes == "Thanks!"


def test_yen_lines_and_tax_are_whole_yen():
    lines = [{"description": "Design", "quantity": Decimal("1.5"), "unit_price": Decimal("999")}]
    invoice = InvoiceFactory(currency="JPY", tax_rate=Decimal("10"), items=lines)

    invoice.refresh_from_db()
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal("1499"),  # 1498.5, half up
        Decimal("150"),  # 149.9
        Decimal("1649"),
    )


@pytest.mark.parametrize(
    ("rate", "tax", "total"),
    [
        ("0", "0.00", "349.99"),
        ("20", "70.00", "419.99"),  # 69.998
        ("7.25", "25.37", "375.36"),  # 25.374...
        ("19.5", "68.25", "418.24"),  # 68.248...
        ("100", "349.99", "699.98"),
    ],
)
def test_tax_is_the_rate_of_the_subtotal_rounded_half_up_to_cents(rate, tax, total):
    invoice = InvoiceFactory(tax_rate=Decimal(rate))  # lines of 300.00 and 49.99

    invoice.refresh_from_db()
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal("349.99"),
        Decimal(tax),
        Decimal(total),
    )


def test_changing_a_drafts_rate_or_lines_recomputes_its_tax_and_total():
    invoice = InvoiceFactory(tax_rate=Decimal("10"))

    invoice = services.update_invoice(invoice, tax_rate=Decimal("20"))
    assert (invoice.tax_total, invoice.total) == (Decimal("70.00"), Decimal("419.99"))

    lines = [{"description": "Audit", "quantity": Decimal("1"), "unit_price": Decimal("100")}]
    invoice = services.update_invoice(invoice, items=lines)
    invoice.refresh_from_db()
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal("100.00"),
        Decimal("20.00"),
        Decimal("120.00"),
    )


def test_finalizing_keeps_the_issuer_as_it_is_then():
    user = UserFactory(email="owner@studio.example")
    services.update_business_profile(user, legal_name="Studio A", payment_instructions="IBAN 1")
    invoice = services.finalize_invoice(InvoiceFactory(user=user))

    services.update_business_profile(user, legal_name="Studio B")

    invoice.refresh_from_db()
    assert invoice.issuer["name"] == "Studio A"
    assert invoice.issuer["payment_instructions"] == "IBAN 1"
    assert invoice.issuer["email"] == "owner@studio.example"


def test_the_clients_email_comes_from_the_business_and_its_page_names_it():
    user = UserFactory(name="Jane Doe", email="jane@studio.example", email_verified=True)
    services.update_business_profile(user, legal_name="Studio North GmbH")
    invoice = services.finalize_invoice(InvoiceFactory(user=user))

    services.send_invoice(invoice)

    email = EmailLog.objects.get(template_name="invoice_notification_client")
    assert email.from_email.startswith('"Studio North GmbH via ')
    assert email.reply_to == "jane@studio.example"
    assert email.context["issuer"] == "Studio North GmbH"
    assert ("Issued by", "Studio North GmbH") in links.describe_invoice(invoice.pk)["fields"]


# API


def test_profile_reads_empty_before_it_is_set_and_makes_no_row(api, user):
    response = api.get(PROFILE)

    assert response.status_code == 200
    assert response.json() == {
        "legal_name": "", "address": "", "tax_id": "", "payment_instructions": "", "notes": "",
        "logo": None, "reminder_days": [-3, 1, 7, 14], "updated_at": None,
    }  # fmt: skip
    assert not BusinessProfile.objects.filter(user=user).exists()


def test_profile_patch_sets_the_fields_given_and_keeps_the_others(api, user):
    api.patch(PROFILE, {"legal_name": "Acme Studio", "tax_id": "DE123"}, format="json")

    response = api.patch(PROFILE, {"address": "1 Main St\nBerlin"}, format="json")

    assert response.status_code == 200
    assert response.json()["legal_name"] == "Acme Studio"
    assert response.json()["address"] == "1 Main St\nBerlin"
    assert api.get(PROFILE).json()["tax_id"] == "DE123"


def test_profile_logo_is_a_data_url_both_ways_and_null_removes_it(api, user):
    logo = data_url(image_bytes("JPEG"), "image/jpeg")

    assert api.patch(PROFILE, {"logo": logo}, format="json").json()["logo"] == logo
    assert bytes(BusinessProfile.objects.get(user=user).logo) == base64.b64decode(logo[23:])

    assert api.patch(PROFILE, {"logo": None}, format="json").json()["logo"] is None
    assert bytes(BusinessProfile.objects.get(user=user).logo) == b""


@pytest.mark.parametrize(
    "logo",
    [
        "https://example.com/logo.png",
        "data:image/png;base64,not base64!",
        "data:image/png;base64,AAAA",  # not an image
        data_url(image_bytes("GIF"), "image/gif"),
        data_url(image_bytes("JPEG"), "image/png"),  # not what it says it is
        data_url(image_bytes(size=(2001, 10))),
        data_url(image_bytes(size=(400, 400), noise=True)),  # over the size limit
        data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        data_url(image_bytes(size=(20000, 20000))),  # a decompression bomb: 400M pixels
        data_url(image_bytes(size=(400, 400), noise=True)[:2000]),  # cut short
        data_url(image_bytes("JPEG", size=(400, 400), noise=True)[:3000], "image/jpeg"),
        12,
    ],
)
def test_profile_refuses_anything_but_a_small_png_or_jpeg_logo(api, user, logo):
    response = api.patch(PROFILE, {"logo": logo}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["logo"]
    assert not BusinessProfile.objects.filter(user=user).exists()


def test_the_size_limit_case_is_over_the_limit():
    assert len(image_bytes(size=(400, 400), noise=True)) > MAX_LOGO_BYTES


def test_profile_needs_authentication(anon_client):
    assert anon_client.get(PROFILE).status_code == 401
    assert anon_client.patch(PROFILE, {"legal_name": "X"}, format="json").status_code == 401


def test_profile_is_each_users_own(client_for):
    owner, other = UserFactory(), UserFactory()
    client_for(owner).patch(PROFILE, {"legal_name": "Owner Ltd"}, format="json")

    assert client_for(other).get(PROFILE).json()["legal_name"] == ""


def test_invoice_takes_an_address_a_tax_rate_and_notes_and_answers_its_totals(api):
    payload = {
        "client_name": "Acme Ltd",
        "client_email": "billing@acme.example",
        "client_address": "5 Side Rd\nLyon",
        "currency": "EUR",
        "due_date": "2030-01-31",
        "tax_rate": "20.00",
        "notes": "Thanks!",
        "items": [{"description": "Design", "quantity": "2", "unit_price": "150.00"}],
    }

    body = api.post("/api/invoices/", payload, format="json").json()

    assert {key: body[key] for key in ("client_address", "tax_rate", "notes")} == {
        "client_address": "5 Side Rd\nLyon", "tax_rate": "20.00", "notes": "Thanks!",
    }  # fmt: skip
    amounts = ("subtotal", "tax_total", "total", "amount_paid", "balance_due")
    assert [body[key] for key in amounts] == ["300.00", "60.00", "360.00", "0.00", "360.00"]
    listed = api.get("/api/invoices/").json()["results"][0]
    assert [listed[key] for key in amounts] == ["300.00", "60.00", "360.00", "0.00", "360.00"]


@pytest.mark.parametrize("rate", ["100.01", "-1", "5.555", 20, "abc"])
def test_invoice_refuses_a_tax_rate_outside_0_to_100_percent(api, rate):
    response = api.post(
        "/api/invoices/",
        {
            "client_name": "Acme Ltd",
            "client_email": "billing@acme.example",
            "due_date": "2030-01-31",
            "tax_rate": rate,
            "items": [{"description": "Design", "quantity": "1", "unit_price": "1.00"}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()) == ["tax_rate"]
