import datetime
import json
from decimal import Decimal

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from downloads import services as downloads
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services, timeline
from invoicegen.billing.models import Invoice, InvoiceItem, Subscription
from invoicegen.billing.tests.factories import (
    InvoiceFactory,
    SubscriptionFactory,
    invoice_in_status,
    this_years_number,
)

pytestmark = pytest.mark.django_db

INVOICES = "/api/invoices/"


def invoice_url(invoice, action: str = "") -> str:
    return f"{INVOICES}{invoice.pk}/{action + '/' if action else ''}"


def invoice_payload(**overrides):
    payload = {
        "client_name": "Acme Ltd",
        "client_email": "billing@acme.example",
        "currency": "EUR",
        "due_date": "2030-01-31",
        "items": [
            {"description": "Design", "quantity": "2", "unit_price": "150.00"},
            {"description": "Hosting", "quantity": "1.5", "unit_price": "10.33"},
        ],
    }
    payload.update(overrides)
    return payload


def snapshot(invoice):
    """Everything stored about an invoice, to show that a refused request changed nothing."""
    invoice = Invoice.objects.get(pk=invoice.pk)
    return (
        {field.attname: getattr(invoice, field.attname) for field in Invoice._meta.concrete_fields},
        list(invoice.items.values_list("description", "quantity", "unit_price", "amount")),
        list(invoice.payments.values_list("amount", "method")),
    )


# Create


def test_create_answers_201_with_a_numbered_draft_and_its_computed_total(api):
    response = api.post(INVOICES, invoice_payload(), format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["number"] == this_years_number(1)
    assert body["status"] == "draft"
    assert (body["client_name"], body["client_email"], body["currency"], body["due_date"]) == (
        "Acme Ltd",
        "billing@acme.example",
        "EUR",
        "2030-01-31",
    )
    # 2 x 150.00 = 300.00; 1.5 x 10.33 = 15.495, rounded to 15.50
    assert [(item["description"], item["amount"]) for item in body["items"]] == [
        ("Design", "300.00"),
        ("Hosting", "15.50"),
    ]
    assert body["total"] == "315.50"
    assert (body["amount_paid"], body["balance_due"]) == ("0.00", "315.50")
    assert Invoice.objects.get(pk=body["id"]).total == Decimal("315.50")


def test_create_numbers_per_user_and_a_second_user_starts_at_001(api, client_for):
    first = api.post(INVOICES, invoice_payload(), format="json").json()
    second = api.post(INVOICES, invoice_payload(), format="json").json()
    someone_else = client_for(UserFactory()).post(INVOICES, invoice_payload(), format="json")

    assert [first["number"], second["number"]] == [this_years_number(1), this_years_number(2)]
    assert someone_else.json()["number"] == this_years_number(1)


def test_create_defaults_the_currency_to_usd(api):
    payload = invoice_payload()
    del payload["currency"]

    response = api.post(INVOICES, payload, format="json")

    assert response.status_code == 201
    assert response.json()["currency"] == "USD"


def test_create_takes_the_clients_language_else_the_issuers(api, user):
    chosen = api.post(INVOICES, invoice_payload(client_language="de"), format="json")
    user.language = "es"
    user.save(update_fields=["language"])
    default = api.post(INVOICES, invoice_payload(), format="json")

    assert chosen.status_code == 201 and chosen.json()["client_language"] == "de"
    assert default.json()["client_language"] == "es"


@pytest.mark.parametrize("language", ["xx", "", None, 7, ["de"], "DE"])
def test_create_refuses_a_language_it_does_not_speak(api, language):
    response = api.post(INVOICES, invoice_payload(client_language=language), format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["client_language"]
    assert not Invoice.objects.exists()


def test_create_upper_cases_a_valid_lower_case_currency(api):
    response = api.post(INVOICES, invoice_payload(currency="gbp"), format="json")

    assert response.status_code == 201
    assert response.json()["currency"] == "GBP"


def test_create_ignores_read_only_fields_in_the_body(api):
    payload = invoice_payload(status="paid", number="INV-1999-999", total="1.00", amount_paid="5")

    body = api.post(INVOICES, payload, format="json").json()

    assert (body["status"], body["number"], body["total"], body["amount_paid"]) == (
        "draft",
        this_years_number(1),
        "315.50",
        "0.00",
    )


def without(field):
    payload = invoice_payload()
    del payload[field]
    return payload


def with_item(**changes):
    return invoice_payload(
        items=[{"description": "Work", "quantity": "1", "unit_price": "10.00", **changes}]
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param(without("client_name"), "client_name", id="missing client_name"),
        pytest.param(invoice_payload(client_name=""), "client_name", id="blank client_name"),
        pytest.param(without("client_email"), "client_email", id="missing client_email"),
        pytest.param(invoice_payload(client_email="not-an-email"), "client_email", id="bad email"),
        pytest.param(invoice_payload(currency="XYZ"), "currency", id="unknown currency"),
        pytest.param(invoice_payload(currency="EURO"), "currency", id="four-letter currency"),
        pytest.param(invoice_payload(due_date="not-a-date"), "due_date", id="bad due_date"),
        pytest.param(without("due_date"), "due_date", id="missing due_date"),
        pytest.param(invoice_payload(items=[]), "items", id="empty items"),
        pytest.param(without("items"), "items", id="missing items"),
        pytest.param(invoice_payload(items="Design"), "items", id="items not a list"),
    ],
)
def test_create_refuses_bad_input_with_400_naming_the_field(api, payload, field):
    response = api.post(INVOICES, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Invoice.objects.exists()


@pytest.mark.parametrize(
    ("item_changes", "field"),
    [
        pytest.param({"quantity": "0"}, "quantity", id="zero quantity"),
        pytest.param({"quantity": "-1"}, "quantity", id="negative quantity"),
        pytest.param({"quantity": "1.005"}, "quantity", id="quantity with 3 decimals"),
        pytest.param({"quantity": "many"}, "quantity", id="non-numeric quantity"),
        pytest.param({"unit_price": "-0.01"}, "unit_price", id="negative unit_price"),
        pytest.param({"unit_price": "9.999"}, "unit_price", id="unit_price with 3 decimals"),
        pytest.param({"description": ""}, "description", id="blank description"),
        pytest.param({"description": "x" * 501}, "description", id="description too long"),
    ],
)
def test_create_refuses_a_bad_item_with_400_naming_the_item_field(api, item_changes, field):
    response = api.post(INVOICES, with_item(**item_changes), format="json")

    assert response.status_code == 400
    assert field in response.json()["items"]["0"]  # DRF keys a list's errors by item index
    assert not Invoice.objects.exists()


def test_create_refuses_an_item_amount_too_large_to_store_with_400(api):
    """99,999,999.99 x 9,999,999,999.99 does not fit the 14-digit amount and total columns: the
    client must hear which input is wrong, not get a 500."""
    payload = with_item(quantity="99999999.99", unit_price="9999999999.99")

    response = api.post(INVOICES, payload, format="json")

    assert response.status_code == 400
    assert "items" in response.json()
    assert not Invoice.objects.exists()


def test_a_refused_create_does_not_use_up_a_number(api):
    api.post(INVOICES, with_item(quantity="0"), format="json")

    response = api.post(INVOICES, invoice_payload(), format="json")

    assert response.json()["number"] == this_years_number(1)


# List and detail


def test_list_shows_only_the_callers_invoices_newest_first(api, user):
    older, newer = InvoiceFactory(user=user), InvoiceFactory(user=user)
    InvoiceFactory()  # someone else's

    response = api.get(INVOICES)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [invoice["number"] for invoice in body["results"]] == [newer.number, older.number]
    assert body["results"][0]["items"][0]["description"] == "Consulting"


def test_list_and_detail_show_how_the_client_met_the_invoice(api, user):
    invoice, untouched = invoice_in_status("sent", user=user), InvoiceFactory(user=user)
    link, raw = downloads.issue_download_token("invoice", invoice.pk, created_by=user)
    downloads.record_view(link)
    downloads.redeem_token(raw)
    invoice.refresh_from_db()

    listed = {row["id"]: row for row in api.get(INVOICES).json()["results"]}
    shown = api.get(invoice_url(invoice)).json()

    fields = ("first_viewed_at", "view_count", "download_count")
    for body in (listed[invoice.pk], shown):
        assert parse_datetime(body["first_viewed_at"]) == invoice.first_viewed_at
        assert (body["view_count"], body["download_count"]) == (1, 1)
    assert [listed[untouched.pk][name] for name in fields] == [None, 0, 0]


def test_view_and_download_counts_are_read_only(api, user):
    invoice = InvoiceFactory(user=user)

    response = api.patch(
        invoice_url(invoice), {"view_count": 9, "download_count": 9}, format="json"
    )

    assert response.status_code == 200
    invoice.refresh_from_db()
    assert (invoice.view_count, invoice.download_count) == (0, 0)


def test_list_pages_by_page_size(api, user):
    invoices = [InvoiceFactory(user=user, items=[]) for _ in range(3)]

    first = api.get(INVOICES, {"page_size": 2}).json()
    second = api.get(first["next"]).json()

    assert first["count"] == 3
    assert [row["id"] for row in first["results"]] == [invoices[2].pk, invoices[1].pk]
    assert first["previous"] is None
    assert [row["id"] for row in second["results"]] == [invoices[0].pk]
    assert second["next"] is None
    assert second["previous"] is not None


def test_list_page_size_defaults_to_50(api, user):
    for _ in range(51):
        InvoiceFactory(user=user, items=[])

    body = api.get(INVOICES).json()

    assert (body["count"], len(body["results"])) == (51, 50)
    assert body["next"] is not None


def test_list_page_size_is_capped_at_200(api, user):
    for _ in range(201):
        InvoiceFactory(user=user, items=[])

    body = api.get(INVOICES, {"page_size": 1000}).json()

    assert (body["count"], len(body["results"])) == (201, 200)


def test_detail_answers_the_invoice_with_its_items(api, user):
    invoice = InvoiceFactory(user=user)

    response = api.get(invoice_url(invoice))

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["number"], body["total"]) == (invoice.pk, invoice.number, "349.99")
    assert [item["description"] for item in body["items"]] == ["Consulting", "Hosting"]


# Update


def test_patch_of_a_draft_changes_fields_replaces_items_and_recomputes_total(api, user):
    invoice = InvoiceFactory(user=user, currency="EUR")

    response = api.patch(
        invoice_url(invoice),
        {
            "client_name": "Renamed Ltd",
            "due_date": "2031-06-30",
            "items": [{"description": "Audit", "quantity": "3", "unit_price": "33.33"}],
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["client_name"], body["due_date"], body["currency"]) == (
        "Renamed Ltd",
        "2031-06-30",
        "EUR",
    )
    assert [item["description"] for item in body["items"]] == ["Audit"]
    assert body["total"] == "99.99"
    assert body["number"] == invoice.number
    invoice.refresh_from_db()
    assert invoice.total == Decimal("99.99")
    assert list(invoice.items.values_list("description", flat=True)) == ["Audit"]


def test_patch_without_items_keeps_the_items_and_total(api, user):
    invoice = InvoiceFactory(user=user)

    response = api.patch(invoice_url(invoice), {"client_email": "new@example.com"}, format="json")

    assert response.status_code == 200
    assert response.json()["client_email"] == "new@example.com"
    assert response.json()["total"] == "349.99"
    assert len(response.json()["items"]) == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"currency": "XYZ"}, "currency"),
        ({"client_email": "nope"}, "client_email"),
        ({"due_date": "not-a-date"}, "due_date"),
        ({"items": []}, "items"),
        ({"items": [{"description": "Work", "quantity": "1"}]}, "items"),
        ({"client_name": ""}, "client_name"),
    ],
)
def test_patch_refuses_bad_input_with_400_and_changes_nothing(api, user, changes, field):
    invoice = InvoiceFactory(user=user)
    before = snapshot(invoice)

    response = api.patch(invoice_url(invoice), changes, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert snapshot(invoice) == before


# Lifecycle


def test_finalize_answers_200_with_the_finalized_invoice(api, user):
    invoice = InvoiceFactory(user=user)

    response = api.post(invoice_url(invoice, "finalize"))

    assert response.status_code == 200
    assert response.json()["status"] == "finalized"
    assert response.json()["finalized_at"] is not None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.FINALIZED


@pytest.mark.parametrize("status", ["finalized", "sent"])
def test_send_answers_202_with_the_sent_invoice(api, user, status):
    invoice = invoice_in_status(status, user=user)

    response = api.post(invoice_url(invoice, "send"))

    assert response.status_code == 202
    assert response.json()["status"] == "sent"
    assert response.json()["sent_at"] is not None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.SENT


def test_send_accepts_another_recipient(api, user):
    invoice = invoice_in_status("finalized", user=user)

    response = api.post(invoice_url(invoice, "send"), {"to": "accounts@client.example"})

    assert response.status_code == 202
    assert response.json()["status"] == "sent"


def test_send_refuses_an_invalid_recipient_with_400(api, user):
    invoice = invoice_in_status("finalized", user=user)
    before = snapshot(invoice)

    response = api.post(invoice_url(invoice, "send"), {"to": "not an email"})

    assert response.status_code == 400
    assert "to" in response.json()
    assert snapshot(invoice) == before


def test_partial_then_full_payment_turns_the_invoice_paid(api, user):
    invoice = invoice_in_status("sent", user=user)  # total 349.99

    partial = api.post(invoice_url(invoice, "payments"), {"amount": "100.00", "method": "card"})

    assert partial.status_code == 201
    assert partial.json()["amount"] == "100.00"
    assert partial.json()["method"] == "card"
    assert {"id", "created_at"} <= set(partial.json())
    detail = api.get(invoice_url(invoice)).json()
    assert (detail["status"], detail["amount_paid"], detail["balance_due"]) == (
        "sent",
        "100.00",
        "249.99",
    )

    full = api.post(
        invoice_url(invoice, "payments"), {"amount": "249.99", "method": "bank_transfer"}
    )

    assert full.status_code == 201
    detail = api.get(invoice_url(invoice)).json()
    assert (detail["status"], detail["amount_paid"], detail["balance_due"]) == (
        "paid",
        "349.99",
        "0.00",
    )
    assert detail["paid_at"] is not None


def test_payment_of_a_finalized_invoice_is_recorded(api, user):
    invoice = invoice_in_status("finalized", user=user)

    response = api.post(invoice_url(invoice, "payments"), {"amount": "349.99", "method": "cash"})

    assert response.status_code == 201
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_overpayment_is_refused_with_400_naming_amount(api, user):
    invoice = invoice_in_status("sent", user=user)
    services.record_payment(invoice, amount=Decimal("300.00"), method="cash")
    before = snapshot(invoice)

    response = api.post(invoice_url(invoice, "payments"), {"amount": "50.00", "method": "cash"})

    assert response.status_code == 400
    assert "amount" in response.json()
    assert snapshot(invoice) == before


@pytest.mark.parametrize(
    ("payment", "field"),
    [
        ({"amount": "0", "method": "card"}, "amount"),
        ({"amount": "0.00", "method": "card"}, "amount"),
        ({"amount": "-5.00", "method": "card"}, "amount"),
        ({"amount": "1.001", "method": "card"}, "amount"),
        ({"amount": "ten", "method": "card"}, "amount"),
        ({"method": "card"}, "amount"),
        ({"amount": "10.00", "method": "bitcoin"}, "method"),
        ({"amount": "10.00"}, "method"),
    ],
)
def test_payment_refuses_bad_input_with_400_naming_the_field(api, user, payment, field):
    invoice = invoice_in_status("sent", user=user)
    before = snapshot(invoice)

    response = api.post(invoice_url(invoice, "payments"), payment)

    assert response.status_code == 400
    assert field in response.json()
    assert snapshot(invoice) == before


@pytest.mark.parametrize("accept", [None, "application/pdf"])
def test_pdf_answers_200_application_pdf(api, user, accept):
    invoice = InvoiceFactory(user=user)
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = api.get(invoice_url(invoice, "pdf"), **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert invoice.number in response["Content-Disposition"]


# The state machine: every illegal transition is a 409 that changes nothing

ILLEGAL_TRANSITIONS = [
    *[("patch", "", status) for status in ["finalized", "sent", "paid", "void"]],
    *[("post", "finalize", status) for status in ["finalized", "sent", "paid", "void"]],
    *[("post", "send", status) for status in ["draft", "paid", "void"]],
    *[("post", "payments", status) for status in ["draft", "paid", "void"]],
]
REQUEST_BODIES = {
    "": {"client_name": "Changed"},
    "finalize": {},
    "send": {},
    "payments": {"amount": "1.00", "method": "card"},
}


@pytest.mark.parametrize(("method", "action", "status"), ILLEGAL_TRANSITIONS)
def test_illegal_transition_answers_409_and_changes_nothing(api, user, method, action, status):
    invoice = invoice_in_status(status, user=user)
    before = snapshot(invoice)

    response = getattr(api, method)(invoice_url(invoice, action), REQUEST_BODIES[action])

    assert response.status_code == 409
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)
    assert snapshot(invoice) == before


# Permissions


def endpoints(invoice_id):
    return [
        ("get", INVOICES),
        ("post", INVOICES),
        ("get", f"{INVOICES}{invoice_id}/"),
        ("patch", f"{INVOICES}{invoice_id}/"),
        ("post", f"{INVOICES}{invoice_id}/finalize/"),
        ("post", f"{INVOICES}{invoice_id}/send/"),
        ("post", f"{INVOICES}{invoice_id}/payments/"),
        ("get", f"{INVOICES}{invoice_id}/pdf/"),
        ("get", "/api/subscription/"),
        ("post", "/api/subscription/"),
        ("post", "/api/subscription/cancel/"),
        ("post", "/api/subscription/renew/"),
    ]


@pytest.mark.parametrize(("method", "path"), endpoints("{id}"))
def test_anonymous_requests_are_refused_with_401(anon_client, method, path):
    invoice = InvoiceFactory()
    SubscriptionFactory(user=invoice.user)
    before = snapshot(invoice)

    response = getattr(anon_client, method)(path.format(id=invoice.pk), {})

    assert response.status_code == 401
    assert "WWW-Authenticate" in response
    assert snapshot(invoice) == before


def test_an_invalid_token_is_refused_with_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get(INVOICES).status_code == 401


@pytest.mark.parametrize(
    ("method", "action", "body"),
    [
        ("get", "", {}),
        ("patch", "", {"client_name": "Hijacked"}),
        ("post", "finalize", {}),
        ("post", "send", {"to": "attacker@example.com"}),
        ("post", "payments", {"amount": "1.00", "method": "cash"}),
        ("get", "pdf", {}),
    ],
)
@pytest.mark.parametrize("status", ["draft", "sent"])
def test_another_users_invoice_answers_404_and_leaks_nothing(api, method, action, body, status):
    invoice = invoice_in_status(status, client_name="Secret Client Ltd")
    before = snapshot(invoice)

    response = getattr(api, method)(invoice_url(invoice, action), body)

    assert response.status_code == 404
    assert b"Secret Client Ltd" not in response.content
    assert invoice.number.encode() not in response.content
    assert snapshot(invoice) == before


def test_another_users_invoice_pdf_answers_404_also_when_asking_for_pdf(api):
    invoice = InvoiceFactory(client_name="Secret Client Ltd")

    response = api.get(invoice_url(invoice, "pdf"), HTTP_ACCEPT="application/pdf")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_session_authenticated_writes_need_a_csrf_token(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.get(INVOICES).status_code == 200
    response = client.post(INVOICES, invoice_payload(), format="json")

    assert response.status_code == 403
    assert not Invoice.objects.exists()


# URLs


@pytest.mark.parametrize(
    "path", ["/api/invoices/abc/", "/api/invoices/abc/finalize/", "/api/invoices/1.5/"]
)
def test_a_non_numeric_invoice_id_answers_404(api, path):
    assert api.get(path).status_code == 404
    assert api.post(path).status_code == 404


def test_an_invoice_id_beyond_the_integer_range_answers_404(api):
    response = api.get(f"{INVOICES}{10**30}/")

    assert response.status_code == 404


@pytest.mark.parametrize("slash", ["", "/"])
def test_invoice_endpoints_answer_with_and_without_a_trailing_slash(api, user, slash):
    assert api.get(f"/api/invoices{slash}").status_code == 200
    assert api.post(f"/api/invoices{slash}", invoice_payload(), format="json").status_code == 201
    invoice = Invoice.objects.get(user=user)
    base = f"/api/invoices/{invoice.pk}"

    assert api.get(f"{base}{slash}").status_code == 200
    assert api.patch(f"{base}{slash}", {"client_name": "B"}, format="json").status_code == 200
    assert api.get(f"{base}/pdf{slash}").status_code == 200
    assert api.post(f"{base}/finalize{slash}").status_code == 200
    assert api.post(f"{base}/send{slash}").status_code == 202
    payment = {"amount": "1.00", "method": "cash"}
    assert api.post(f"{base}/payments{slash}", payment).status_code == 201


@pytest.mark.parametrize("slash", ["", "/"])
def test_subscription_endpoints_answer_with_and_without_a_trailing_slash(api, slash):
    assert api.post(f"/api/subscription{slash}", {"plan": "pro"}).status_code == 201
    assert api.get(f"/api/subscription{slash}").status_code == 200
    assert api.post(f"/api/subscription/renew{slash}").status_code == 200
    assert api.post(f"/api/subscription/cancel{slash}").status_code == 200


# Subscription

SUBSCRIPTION = "/api/subscription/"


def test_subscription_answers_404_before_any(api):
    response = api.get(SUBSCRIPTION)

    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize("plan", ["free", "pro", "business"])
def test_subscribing_answers_201_with_an_active_one_month_period(api, user, plan):
    before = timezone.now()

    response = api.post(SUBSCRIPTION, {"plan": plan})

    assert response.status_code == 201
    body = response.json()
    assert (body["plan"], body["status"]) == (plan, "active")
    start = parse_datetime(body["current_period_start"])
    end = parse_datetime(body["current_period_end"])
    assert before <= start <= timezone.now()
    assert datetime.timedelta(days=28) <= end - start <= datetime.timedelta(days=31)
    assert api.get(SUBSCRIPTION).json() == body


def test_subscribing_again_while_active_answers_409(api, user):
    api.post(SUBSCRIPTION, {"plan": "pro"})

    response = api.post(SUBSCRIPTION, {"plan": "business"})

    assert response.status_code == 409
    assert "detail" in response.json()
    assert Subscription.objects.get(user=user).plan == "pro"


@pytest.mark.parametrize("plan", ["enterprise", "", None])
def test_subscribing_to_an_unknown_plan_answers_400_naming_plan(api, user, plan):
    response = api.post(SUBSCRIPTION, {"plan": plan}, format="json")

    assert response.status_code == 400
    assert "plan" in response.json()
    assert not Subscription.objects.filter(user=user).exists()


def test_subscribing_without_a_plan_answers_400_naming_plan(api):
    response = api.post(SUBSCRIPTION, {})

    assert response.status_code == 400
    assert "plan" in response.json()


def test_cancel_answers_200_then_409_when_already_cancelled(api, user):
    api.post(SUBSCRIPTION, {"plan": "pro"})

    cancelled = api.post(f"{SUBSCRIPTION}cancel/")
    again = api.post(f"{SUBSCRIPTION}cancel/")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelled_at"] is not None
    assert again.status_code == 409
    assert "detail" in again.json()
    assert Subscription.objects.get(user=user).status == Subscription.Status.CANCELLED


def test_subscribing_after_cancelling_starts_a_new_period(api, user):
    api.post(SUBSCRIPTION, {"plan": "pro"})
    api.post(f"{SUBSCRIPTION}cancel/")

    response = api.post(SUBSCRIPTION, {"plan": "business"})

    assert response.status_code == 201
    assert (response.json()["plan"], response.json()["status"]) == ("business", "active")


def test_renew_answers_200_and_extends_the_period_by_one_month(api, user):
    SubscriptionFactory(
        user=user,
        current_period_start=datetime.datetime(2099, 1, 1, 12, tzinfo=datetime.UTC),
        current_period_end=datetime.datetime(2099, 1, 31, 12, tzinfo=datetime.UTC),
    )

    response = api.post(f"{SUBSCRIPTION}renew/")

    assert response.status_code == 200
    assert response.json()["status"] == "active"
    assert parse_datetime(response.json()["current_period_end"]) == datetime.datetime(
        2099, 2, 28, 12, tzinfo=datetime.UTC
    )


@pytest.mark.parametrize("change", ["cancel", "renew"])
def test_changing_a_missing_subscription_answers_404(api, change):
    response = api.post(f"{SUBSCRIPTION}{change}/")

    assert response.status_code == 404
    assert not Subscription.objects.exists()


def test_subscription_endpoints_only_touch_the_callers_subscription(api, user):
    someone_else = SubscriptionFactory(plan="business")

    assert api.get(SUBSCRIPTION).status_code == 404
    assert api.post(f"{SUBSCRIPTION}cancel/").status_code == 404
    someone_else.refresh_from_db()
    assert someone_else.status == Subscription.Status.ACTIVE


def test_an_invoice_is_written_as_drfs_fields_would_write_it():
    """The list's fast representation and the declared fields agree, to the character."""
    from rest_framework.serializers import ModelSerializer

    from invoicegen.billing.api.serializers import InvoiceSerializer

    odd = [{"description": "Odd", "quantity": Decimal("3.33"), "unit_price": Decimal("0.07")}]
    for status in ["draft", "finalized", "sent", "paid", "void"]:
        invoice_in_status(status, items=odd)
    delivery_status = timeline.latest_delivery_status()
    for invoice in Invoice.objects.annotate(delivery_status=delivery_status):
        serializer = InvoiceSerializer(invoice)
        assert serializer.data == ModelSerializer.to_representation(serializer, invoice)


def test_the_list_writes_each_invoice_as_drfs_fields_would_write_it(api, user):
    """The list writes its page from rows of values, not instances: the same text, key order
    and lines (in their order; none too) as the declared fields write of each invoice."""
    from rest_framework.serializers import ModelSerializer

    from invoicegen.billing.api.serializers import InvoiceSerializer

    odd = [
        {"description": "Odd", "quantity": Decimal("3.33"), "unit_price": Decimal("0.07")},
        {"description": "Second", "quantity": Decimal("1"), "unit_price": Decimal("1000")},
    ]
    for status in ["draft", "finalized", "sent", "paid", "void"]:
        invoice_in_status(status, user=user, items=odd)
    InvoiceFactory(user=user, items=[])

    results = api.get(INVOICES).json()["results"]

    invoices = Invoice.objects.filter(user=user).prefetch_related("items")
    invoices = invoices.annotate(delivery_status=timeline.latest_delivery_status())
    expected = [ModelSerializer.to_representation(InvoiceSerializer(i), i) for i in invoices]
    assert len(results) == 6
    assert json.dumps(results) == json.dumps(expected)


def test_the_list_builds_no_model_instance(api, user, monkeypatch):
    """An instance per invoice and per line (and prefetch's machinery) would cost a page more
    than the rest of its work."""
    InvoiceFactory.create_batch(2, user=user)

    def refuse(cls, *args):
        raise AssertionError(f"a list built a {cls.__name__}")

    for model in (Invoice, InvoiceItem):
        monkeypatch.setattr(model, "from_db", classmethod(refuse))
    response = api.get(INVOICES)

    assert response.status_code == 200
    assert [len(invoice["items"]) for invoice in response.json()["results"]] == [2, 2]


# Void


@pytest.mark.parametrize("status", ["finalized", "sent"])
def test_void_answers_the_void_invoice(api, user, status):
    invoice = invoice_in_status(status, user=user)

    response = api.post(invoice_url(invoice, "void"))

    assert response.status_code == 200
    assert response.json()["status"] == "void"
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.VOID


@pytest.mark.parametrize("status", ["draft", "paid", "void"])
def test_void_of_a_draft_paid_or_void_invoice_is_a_conflict(api, user, status):
    invoice = invoice_in_status(status, user=user)
    before = snapshot(invoice)

    response = api.post(invoice_url(invoice, "void"))

    assert response.status_code == 409
    assert response.json() == {"detail": f"Cannot void an invoice that is {status}."}
    assert snapshot(invoice) == before


def test_void_of_an_invoice_with_a_payment_is_a_conflict(api, user):
    invoice = invoice_in_status("sent", user=user)
    services.record_payment(invoice, amount=Decimal("1.00"), method="cash")

    response = api.post(invoice_url(invoice, "void"))

    assert response.status_code == 409
    assert response.json() == {"detail": "Cannot void an invoice that has payments."}


def test_void_of_another_users_invoice_is_not_found(api):
    invoice = invoice_in_status("finalized", user=UserFactory())

    response = api.post(invoice_url(invoice, "void"))

    assert response.status_code == 404
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.FINALIZED


def test_void_needs_a_login(user):
    invoice = invoice_in_status("finalized", user=user)

    assert APIClient().post(invoice_url(invoice, "void")).status_code == 401


# Delete


def numbers_of(user) -> list[str]:
    return list(
        Invoice.objects.filter(user=user).order_by("sequence").values_list("number", flat=True)
    )


def test_delete_of_a_draft_answers_204_and_records_one_invoice_deleted(api, user):
    invoice = InvoiceFactory(user=user)
    mark = last_entry_id()

    response = api.delete(invoice_url(invoice))

    assert response.status_code == 204
    assert not Invoice.objects.filter(pk=invoice.pk).exists()
    assert not InvoiceItem.objects.filter(invoice_id=invoice.pk).exists()
    assert actions_after(mark, resource_type="invoice") == ["invoice.deleted"]
    entry = only_entry(mark, "invoice.deleted")
    assert (entry.resource_id, entry.user_id, entry.origin) == (str(invoice.pk), user.pk, "api")
    assert entry.metadata["invoice_number"] == invoice.number


def test_deleting_the_newest_draft_gives_its_number_back(api, user):
    first, newest = InvoiceFactory(user=user), InvoiceFactory(user=user)

    api.delete(invoice_url(newest))
    again = InvoiceFactory(user=user)

    assert again.number == newest.number
    assert numbers_of(user) == [first.number, newest.number]


def test_deleting_an_older_draft_moves_the_later_drafts_down_one(api, user):
    first, second, third = (InvoiceFactory(user=user) for _ in range(3))

    assert api.delete(invoice_url(first)).status_code == 204
    fourth = InvoiceFactory(user=user)

    assert [Invoice.objects.get(pk=i.pk).number for i in (second, third)] == [
        this_years_number(1),
        this_years_number(2),
    ]
    assert fourth.number == this_years_number(3)
    assert numbers_of(user) == [this_years_number(n) for n in (1, 2, 3)]


def test_a_draft_with_an_issued_invoice_after_it_is_kept(api, user):
    draft = InvoiceFactory(user=user)
    issued = invoice_in_status("finalized", user=user)
    before = snapshot(draft)

    response = api.delete(invoice_url(draft))

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Cannot delete {draft.number}: {issued.number} was issued after it, and the "
        "numbers of a year have no gaps. Edit the draft instead."
    }
    assert snapshot(draft) == before


@pytest.mark.parametrize("status", ["finalized", "sent", "paid", "void"])
def test_delete_of_an_issued_invoice_is_a_conflict(api, user, status):
    invoice = invoice_in_status(status, user=user)
    before = snapshot(invoice)

    response = api.delete(invoice_url(invoice))

    assert response.status_code == 409
    assert response.json() == {"detail": f"Cannot delete an invoice that is {status}."}
    assert snapshot(invoice) == before


def test_delete_of_another_users_draft_is_not_found(api):
    invoice = InvoiceFactory(user=UserFactory())

    assert api.delete(invoice_url(invoice)).status_code == 404
    assert APIClient().delete(invoice_url(invoice)).status_code == 401
    assert Invoice.objects.filter(pk=invoice.pk).exists()
