"""GET /api/invoices/ filters: status, search, due_after, due_before and ordering; a value the
list cannot use is a 400 naming the filter, never a filter silently dropped."""

import datetime
from decimal import Decimal

import pytest

from downloads import services as downloads
from invoicegen.billing import services
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import InvoiceFactory, invoice_in_status

pytestmark = pytest.mark.django_db

INVOICES = "/api/invoices/"


def numbers(api, query: str) -> list[str]:
    response = api.get(f"{INVOICES}?{query}")
    assert response.status_code == 200, response.content
    return [invoice["number"] for invoice in response.json()["results"]]


def item(price: str) -> list[dict]:
    return [{"description": "Work", "quantity": Decimal(1), "unit_price": Decimal(price)}]


@pytest.fixture
def book(user):
    """Four invoices of the user, and one of someone else's that matches every filter."""
    rows = [  # name, status, client, email, due, price: made in this order
        ("acme", "draft", "ACME Ltd", "ap@acme.example", (2030, 1, 10), "300.00"),
        ("globex", "finalized", "Globex", "billing@globex.example", (2030, 2, 1), "50.00"),
        ("initech", "sent", "Initech", "grace@initech.example", (2030, 1, 31), "1000.00"),
        ("hooli", "void", "Hooli", "gavin@hooli.example", (2030, 3, 1), "75.00"),
    ]
    made = {
        name: invoice_in_status(
            status,
            user=user,
            client_name=client,
            client_email=email,
            due_date=datetime.date(*due),
            items=item(price),
        )
        for name, status, client, email, due, price in rows
    }
    InvoiceFactory(client_name="ACME Ltd", due_date=datetime.date(2030, 1, 10))
    return {name: invoice.number for name, invoice in made.items()}


def test_status_lists_only_that_status(api, book):
    assert numbers(api, "status=finalized") == [book["globex"]]
    assert numbers(api, "status=void") == [book["hooli"]]


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("acme", ["acme"]),  # the client's name, in any case
        ("GRACE@", ["initech"]),  # the client's email
        ("example", ["hooli", "initech", "globex", "acme"]),
        ("nobody", []),
    ],
)
def test_search_matches_number_client_name_or_email(api, book, search, found):
    assert numbers(api, f"search={search}") == [book[name] for name in found]


def test_search_by_number(api, book):
    assert numbers(api, f"search={book['globex'].lower()}") == [book["globex"]]


def test_due_dates_bound_the_list_both_ends_included(api, book):
    assert numbers(api, "due_after=2030-01-31&due_before=2030-02-01") == [
        book["initech"],  # newest first, as always without an ordering
        book["globex"],
    ]
    assert numbers(api, "due_before=2030-01-10") == [book["acme"]]


@pytest.mark.parametrize(
    ("ordering", "order"),
    [
        ("due_date", ["acme", "initech", "globex", "hooli"]),
        ("-total", ["initech", "acme", "hooli", "globex"]),
        ("client_name,-due_date", ["acme", "globex", "hooli", "initech"]),
        ("number", ["acme", "globex", "initech", "hooli"]),
        ("-number", ["hooli", "initech", "globex", "acme"]),
    ],
)
def test_ordering(api, book, ordering, order):
    assert numbers(api, f"ordering={ordering}") == [book[name] for name in order]


def test_number_ordering_follows_the_sequence_past_999(api, user):
    first = InvoiceFactory(user=user)
    Invoice.objects.filter(pk=first.pk).update(sequence=1000, number=f"INV-{first.year}-1000")
    second = InvoiceFactory(user=user)  # sequence 2: before 1000, though "-1000" < "-002"

    assert numbers(api, "ordering=number") == [second.number, f"INV-{first.year}-1000"]


def test_filters_combine_and_keep_to_the_callers_invoices(api, book):
    assert numbers(api, "search=acme&status=draft&due_before=2030-01-10") == [book["acme"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=overdue", "status"),
        ("due_before=31/01/2030", "due_before"),
        ("due_after=2030-02-30", "due_after"),
        ("due_after=2030-02-01&due_before=2030-01-01", "due_before"),
        ("ordering=password", "ordering"),
        ("ordering=due_date,user__password", "ordering"),
        (f"search={'x' * 101}", "search"),
        ("viewed=yes", "viewed"),
        ("viewed=1", "viewed"),
        ("search=a%00b", "search"),
    ],
)
def test_a_value_the_list_cannot_use_is_a_400_naming_the_filter(api, book, query, field):
    response = api.get(f"{INVOICES}?{query}")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_the_schema_lists_the_filters(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    parameters = schema["paths"]["/api/invoices/"]["get"]["parameters"]

    names = {parameter["name"] for parameter in parameters}
    assert {"status", "search", "due_after", "due_before", "ordering", "viewed"} <= names
    assert "400" in schema["paths"]["/api/invoices/"]["get"]["responses"]


def test_viewed_lists_the_invoices_a_client_has_viewed_or_not(api, user, book):
    viewed = Invoice.objects.get(number=book["initech"])
    link, _ = downloads.issue_download_token("invoice", viewed.pk, created_by=user)
    downloads.record_view(link)

    assert numbers(api, "viewed=true") == [book["initech"]]
    assert numbers(api, "viewed=false") == [book["hooli"], book["globex"], book["acme"]]


def test_a_voided_invoice_is_found_by_status_after_the_void(api, user):
    invoice = invoice_in_status("finalized", user=user)
    services.void_invoice(invoice)

    assert numbers(api, "status=void") == [invoice.number]


def test_the_lists_filters_do_not_apply_to_one_invoice(api, user):
    invoice = InvoiceFactory(user=user)

    response = api.get(f"{INVOICES}{invoice.pk}/?status=paid&due_after=2099-01-01")
    links = api.get(
        f"{INVOICES}{invoice.pk}/download-links/?due_after=2030-02-01&due_before=2030-01-01"
    )

    assert response.status_code == 200
    assert links.status_code == 200
