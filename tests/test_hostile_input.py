"""Hostile input gets a 4xx in the API's JSON error shape, never a 500: deep JSON, lone
surrogates, huge and undecodable bodies, other content types, odd methods on every route,
ids that overflow a bigint, and query strings with odd values."""

import base64
import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from audit.tests.factories import AuditLogFactory
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import invoice_in_status
from notifications.tests.factories import NotificationFactory
from tests.contract import served_contract
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db

INVOICES = "/api/invoices/"
BIGINT_OVERFLOW = "99999999999999999999"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"]


def api_routes() -> list[tuple[str, dict]]:
    """(name, kwargs) of every named route under /api/, namespaced as `reverse` wants them;
    each group of the path is a string of digits, which every group of ours accepts."""

    def walk(patterns, namespace, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern).lstrip("^")
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry.url_patterns, inner, route)
            elif isinstance(entry, URLPattern) and entry.name and route.startswith("api/"):
                yield f"{namespace}{entry.name}", dict.fromkeys(entry.pattern.regex.groupindex)

    return list(walk(get_resolver().url_patterns, "", ""))


ROUTES = api_routes()
# The schema answers in its own media types (OpenAPI YAML or JSON), errors included.
OPENAPI_ROUTES = {"schema", "schema-json"}


def route_path(name: str, kwargs: dict, value: str = "1") -> str:
    return reverse(name, kwargs=dict.fromkeys(kwargs, value))


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def post_raw(client, path: str, body: bytes | str, content_type="application/json"):
    if isinstance(body, str):
        body = body.encode()
    return client.generic("POST", path, body, content_type=content_type)


@pytest.fixture
def staff_api(client_for):
    return client_for(UserFactory(is_staff=True))


@pytest.fixture
def sent_invoice(user):
    return invoice_in_status(Invoice.Status.SENT, user=user)


def nested(depth: int) -> str:
    return '{"client_name": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


# Deep JSON


@pytest.mark.parametrize("path", [INVOICES, "/api/auth/signup/", "/api/auth/login/"])
def test_json_nested_a_thousand_deep_is_a_400_that_says_why(api, path):
    body = "[" * 1000 + "]" * 1000

    detail = assert_json_error(post_raw(api, path, body), 400)["detail"]

    assert "nesting is deeper than 32 levels" in detail


def test_json_one_level_deeper_than_the_limit_is_refused(api):
    detail = assert_json_error(post_raw(api, INVOICES, nested(33)), 400)["detail"]

    assert "deeper than 32" in detail


def test_json_at_the_limit_reaches_the_serializer(api):
    errors = assert_json_error(post_raw(api, INVOICES, nested(32)), 400)

    assert errors["client_name"] == ["Not a valid string."]


# Lone surrogates


def test_a_lone_surrogate_in_a_value_is_a_400_naming_the_field(api, sent_invoice):
    body = '{"amount": "1.00", "method": "\\ud800"}'

    response = post_raw(api, f"{INVOICES}{sent_invoice.pk}/payments/", body)

    detail = assert_json_error(response, 400)["detail"]
    assert "the value at method holds a lone surrogate" in detail
    assert not sent_invoice.payments.exists()


def test_a_lone_surrogate_deep_in_a_list_names_its_path(api):
    body = '{"items": [{"description": "ok"}, {"description": "\\udfff"}]}'

    detail = assert_json_error(post_raw(api, INVOICES, body), 400)["detail"]

    assert "the value at items[1].description holds a lone surrogate" in detail


def test_a_lone_surrogate_in_a_key_is_a_400(api):
    body = '{"client_name": {"\\ud800": 1}}'

    detail = assert_json_error(post_raw(api, INVOICES, body), 400)["detail"]

    assert "a key at client_name holds a lone surrogate" in detail


def test_a_surrogate_pair_is_an_ordinary_character(api):
    body = json.dumps(
        {
            "client_name": "Smile \ud83d\ude00 Ltd",
            "client_email": "smile@example.com",
            "due_date": "2030-01-31",
            "items": [{"description": "x", "quantity": "1", "unit_price": "1.00"}],
        },
        ensure_ascii=True,
    )
    assert "\\ud83d\\ude00" in body

    response = post_raw(api, INVOICES, body)

    assert response.status_code == 201, response.content
    assert response.json()["client_name"] == "Smile \U0001f600 Ltd"


# Bodies


def test_a_body_over_the_upload_limit_is_a_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"client_name": "x" * 1000})

    detail = assert_json_error(post_raw(api, INVOICES, body), 413)["detail"]

    assert detail == "The body exceeds 1000 bytes."


def test_a_body_within_the_upload_limit_is_parsed(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"client_name": "x" * 900})

    errors = assert_json_error(post_raw(api, INVOICES, body), 400)

    assert "client_name" in errors


def test_a_body_that_is_not_utf8_is_a_400(api):
    detail = assert_json_error(post_raw(api, INVOICES, b'{"client_name": "\xff\xfe"}'), 400)

    assert "JSON parse error" in detail["detail"]


def test_a_body_that_is_not_json_is_a_400(api):
    detail = assert_json_error(post_raw(api, INVOICES, "{'single': 'quotes'}"), 400)

    assert "JSON parse error" in detail["detail"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_body_of_another_content_type_is_a_415(api, content_type):
    response = post_raw(api, INVOICES, "client_name=x", content_type=content_type)

    assert_json_error(response, 415)


# Query parameters


@pytest.mark.parametrize(
    ("path", "known"),
    [
        (INVOICES, {"status": "draft"}),
        ("/api/notifications/", {"is_read": "false"}),
        ("/api/audit/logs/", {"action": "invoice."}),
        ("/api/audit/user/1/logs/", {"success": "true"}),
        ("/api/audit/resource/invoice/1/logs/", {"origin": "api"}),
        ("/api/audit/security-events/", {"page_size": "5"}),
        ("/api/audit/logs/export/", {"format": "jsonl"}),
        ("/api/audit/admin-actions/", {"cursor": ""}),
        ("/api/audit/holds/", {"page_size": "5"}),
        ("/api/emails/suppressions/", {"reason": "bounced"}),
        ("/api/webhooks/endpoints/", {"page": "1"}),
    ],
)
def test_a_list_refuses_a_parameter_it_does_not_take(staff_api, path, known):
    """A misspelt filter (`stauts`) would answer the whole list as if it had applied."""
    assert staff_api.get(path, known).status_code == 200

    response = staff_api.get(path, {**known, "stauts": "draft"})

    assert response.status_code == 400
    assert list(response.json()) == ["stauts"]
    for name in known:
        assert name in response.json()["stauts"][0]


def test_every_list_that_takes_query_parameters_refuses_one_it_does_not(client_for):
    """Each list and export of the schema, on an object of the caller's where its path
    names one: a 400 naming the parameter (the schema declares it)."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    invoice = invoice_in_status(Invoice.Status.SENT, user=staff)
    endpoint = WebhookEndpoint.objects.create(
        user=staff, url="https://hooks.example.com/in", event_types=["*"], secret="s"
    )
    ids = {"user_id": staff.pk, "resource_type": "invoice", "resource_id": invoice.pk}
    api = client_for(staff)
    lists = [
        path.format(**ids, id=endpoint.pk if path.startswith("/api/webhooks/") else invoice.pk)
        for path, item in served_contract().paths.items()
        if "get" in item
        and item["get"]["operationId"].startswith(("list", "export"))
        and any(p["in"] == "query" for p in item["get"].get("parameters", []))
    ]
    assert len(lists) >= 12

    for path in lists:
        response = api.get(path, {"stauts": "draft"})
        assert response.status_code == 400, (path, response.content)
        assert list(response.json()) == ["stauts"], path


@pytest.mark.parametrize(
    "path",
    [
        "/api/invoices/\u0661/",  # an Arabic-Indic one: \d would take it for invoice 1
        "/api/notifications/\u0661/",
        "/api/audit/user/0/logs/",  # no user's id
        "/api/audit/user/9223372036854775808/logs/",  # past a bigint
    ],
)
def test_an_id_that_is_no_row_id_is_a_404(staff_api, path):
    response = staff_api.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


# Every route of the API


@pytest.mark.parametrize(("name", "kwargs"), ROUTES, ids=[name for name, _ in ROUTES])
def test_options_answers_every_route(staff_api, anon_client, name, kwargs):
    path = route_path(name, kwargs)

    response = staff_api.options(path)

    assert response.status_code == 200, response.content
    assert name in OPENAPI_ROUTES or response["Content-Type"] == "application/json"
    assert "OPTIONS" in response["Allow"]
    assert anon_client.options(path).status_code in {200, 401}


@pytest.mark.parametrize(("name", "kwargs"), ROUTES, ids=[name for name, _ in ROUTES])
def test_methods_a_route_does_not_allow_are_a_405(staff_api, name, kwargs):
    path = route_path(name, kwargs)
    allowed = set(staff_api.options(path)["Allow"].split(", "))

    for method in set(METHODS) - allowed:
        response = staff_api.generic(method, path)
        assert response.status_code == 405, (method, response.content)
        assert name in OPENAPI_ROUTES or response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [(name, kwargs) for name, kwargs in ROUTES if kwargs],
    ids=[name for name, kwargs in ROUTES if kwargs],
)
def test_ids_that_overflow_a_bigint_are_never_a_500(staff_api, name, kwargs):
    path = route_path(name, kwargs, BIGINT_OVERFLOW)

    for method in METHODS:
        response = staff_api.generic(method, path, "{}", content_type="application/json")
        assert response.status_code < 500, (method, response.content)
        assert response["Content-Type"] == "application/json"


def test_options_on_a_put_action_without_an_object_describes_no_body(api):
    response = api.options("/api/notifications/mark-all-read/")

    assert response.status_code == 200
    assert "actions" not in response.json()


def test_options_on_a_generic_view_still_describes_its_body(api):
    response = api.options("/api/auth/me/")

    assert response.status_code == 200
    assert response.json()["name"] == "Me"


@pytest.mark.parametrize(
    "path",
    [f"{INVOICES}abc/", f"{INVOICES}1/download-links/x/", "/api/no-such-thing/"],
)
def test_a_path_no_api_route_matches_is_a_json_404(api, path):
    assert assert_json_error(api.get(path), 404) == {"detail": "Not found."}


def test_a_path_outside_the_api_keeps_the_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# Query strings


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", " 1", "1_0", "\u0661"])
def test_a_page_that_is_not_a_positive_integer_is_a_400_naming_it(api, value):
    errors = assert_json_error(api.get(INVOICES, {"page": value}), 400)

    assert list(errors) == ["page"]


def test_a_page_past_the_last_is_a_404(api):
    assert_json_error(api.get(INVOICES, {"page": BIGINT_OVERFLOW}), 404)


@pytest.mark.parametrize("path", [INVOICES, "/api/notifications/", "/api/audit/logs/"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", BIGINT_OVERFLOW + "x"])
def test_a_page_size_that_is_not_a_positive_integer_is_a_400_naming_it(staff_api, path, value):
    errors = assert_json_error(staff_api.get(path, {"page_size": value}), 400)

    assert list(errors) == ["page_size"]


@pytest.mark.parametrize("path", [INVOICES, "/api/notifications/", "/api/audit/logs/"])
@pytest.mark.parametrize("value", ["200", "999", BIGINT_OVERFLOW, ""])
def test_a_page_size_of_any_size_or_none_is_served(staff_api, path, value):
    response = staff_api.get(path, {"page_size": value})

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "path",
    [
        f"{INVOICES}?page=&page_size=",
        "/api/notifications/?is_read=&type=",
        "/api/audit/logs/?cursor=&user=&since=&success=",
        "/api/audit/logs/export/?format=&ip=",
    ],
)
def test_an_empty_optional_query_parameter_is_as_if_absent(staff_api, path):
    assert staff_api.get(path).status_code == 200


def cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    "value",
    [
        cursor("p=abc"),
        cursor("p=\x00"),
        cursor("p=-1"),
        cursor("o=-5"),
        cursor("r=x"),
        "garbage",
        "\u00e9t\u00e9",
    ],
)
def test_a_cursor_the_api_did_not_make_is_a_404_on_the_audit_lists(staff_api, value):
    AuditLogFactory()
    for path in ["/api/audit/logs/", "/api/audit/security-events/", "/api/audit/admin-actions/"]:
        detail = assert_json_error(staff_api.get(path, {"cursor": value}), 404)["detail"]
        assert detail == "Invalid cursor"


@pytest.mark.parametrize("value", ["%%%", cursor(f"p={BIGINT_OVERFLOW}")])
def test_a_cursor_that_decodes_to_no_position_or_past_every_id_is_served(staff_api, value):
    AuditLogFactory()

    response = staff_api.get("/api/audit/logs/", {"cursor": value})

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("action=%00", 400),
        ("ip=%00", 400),
        ("user=%00", 400),
        ("user=" + BIGINT_OVERFLOW, 400),
        ("user=1.5", 400),
        ("user=%205", 400),
        ("user=1_0", 400),
        ("ip=%1F", 400),
        ("ip=%201.2.3.4", 400),
        ("since=2026-01-31", 400),
        ("since=2026-01-31T09:00:00", 400),
        ("resource_id=%ff%fe", 200),
        ("since=%ED%A0%80", 400),
        # An offset PostgreSQL refuses, taken in UTC; moments whose UTC date leaves years 1-9999.
        ("since=0048-04-13T11:29:24%2B16:16", 200),
        ("since=2026-01-31t09:00:00z", 200),
        ("since=0001-01-01T00:00:00%2B05:00", 400),
        ("until=9999-12-31T23:59:59-05:00", 400),
        ("success=%00", 400),
    ],
)
def test_odd_filter_values_are_a_400_naming_them_or_served(staff_api, query, status):
    response = staff_api.get(f"/api/audit/logs/?{query}")

    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    if status == 400:
        assert list(response.json()) == [query.split("=")[0]]


def test_a_nul_in_a_path_segment_is_never_a_500(staff_api):
    response = staff_api.get("/api/audit/resource/invoice/a%00b/logs/")

    assert response.status_code in {200, 404}
    assert response["Content-Type"] == "application/json"


def test_notification_filters_refuse_odd_values_naming_them(api):
    NotificationFactory()

    errors = assert_json_error(api.get("/api/notifications/", {"type": "\x00"}), 400)

    assert list(errors) == ["type"]


@pytest.mark.parametrize("value", ["1", "0", "yes", "on", "True", "FALSE"])
def test_a_query_boolean_is_true_or_false_only(staff_api, value):
    for path, query in [
        ("/api/audit/logs/", {"success": value}),
        ("/api/notifications/", {"is_read": value}),
    ]:
        assert list(assert_json_error(staff_api.get(path, query), 400)) == list(query)

    cleanup = staff_api.delete(f"/api/audit/cleanup/?days=365&dry_run={value}")

    assert list(assert_json_error(cleanup, 400)) == ["dry_run"]


# Values of another JSON type or form than the schema's


@pytest.mark.parametrize(
    ("path", "method", "body", "field"),
    [
        ("/api/auth/me/", "PATCH", {"name": 0}, "name"),
        ("/api/auth/login/", "POST", {"email": "a@example.com", "password": 123}, "password"),
        (INVOICES, "POST", {"currency": "Gbp"}, "currency"),
        (INVOICES, "POST", {"items": [{"quantity": 2}]}, "items"),
        (INVOICES, "POST", {"items": [{"unit_price": "1e2"}]}, "items"),
        (INVOICES, "POST", {"items": [{"unit_price": " 1.00"}]}, "items"),
        (INVOICES, "POST", {"items": [{"quantity": "\u0661"}]}, "items"),
        ("{sent}payments/", "POST", {"amount": 10, "method": "card"}, "amount"),
        ("{sent}download-links/", "POST", {"expires_in_hours": "5"}, "expires_in_hours"),
        ("{sent}download-links/", "POST", {"max_downloads": 5.0}, "max_downloads"),
    ],
)
def test_a_value_the_schema_does_not_admit_is_a_400_naming_its_field(
    api, sent_invoice, path, method, body, field
):
    path = path.format(sent=f"{INVOICES}{sent_invoice.pk}/")

    errors = assert_json_error(api.generic(method, path, json.dumps(body), "application/json"), 400)

    assert field in errors
