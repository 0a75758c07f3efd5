"""The OpenAPI schema at /api/schema/ declares every answer an operation can give: errors in
the shared shapes on every operation that can meet them, and the success answers as they are
(tests/test_schema_fuzz.py checks the answers against it)."""

import re

import pytest
from rest_framework import serializers

from invoicegen.core.schema import decimal_example

pytestmark = pytest.mark.django_db

ERROR = {"$ref": "#/components/schemas/Error"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def paths(document):
    return document["paths"]


def operations(paths):
    for path, item in paths.items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def json_schema(response) -> dict:
    return response["content"]["application/json"]["schema"]


def test_every_operation_declares_401_406_and_503_in_the_error_shape(paths):
    for name, operation in operations(paths):
        responses = operation["responses"]
        for code in ("401", "406", "503"):
            assert json_schema(responses[code]) == ERROR, (name, code)
        assert "Retry-After" in responses["503"]["headers"], name


def test_bad_input_is_declared_where_there_is_a_body_or_a_query(paths):
    for name, operation in operations(paths):
        has_body = "requestBody" in operation
        has_query = any(p["in"] == "query" for p in operation.get("parameters", []))
        responses = operation["responses"]
        if has_body or has_query:
            assert json_schema(responses["400"])["anyOf"] == [
                ERROR,
                {"$ref": "#/components/schemas/FieldErrors"},
            ], name
        assert ("413" in responses, "415" in responses) == (has_body, has_body), name


@pytest.mark.parametrize(
    "name",
    [
        "POST /api/auth/login/",
        "POST /api/auth/signup/",
        "POST /api/auth/password/reset/",
        "POST /api/auth/verify-email/",
        "POST /api/notifications/test/",
        "POST /api/invoices/{id}/send/",
    ],
)
def test_throttled_operations_declare_429_with_retry_after(paths, name):
    method, path = name.split()

    assert "Retry-After" in paths[path][method.lower()]["responses"]["429"]["headers"]


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("PATCH /api/invoices/{id}/", True),
        ("POST /api/invoices/{id}/finalize/", True),
        ("POST /api/invoices/{id}/send/", True),
        ("POST /api/invoices/{id}/payments/", True),
        ("POST /api/subscription/", True),
        ("POST /api/subscription/cancel/", True),
        ("POST /api/subscription/renew/", False),
        ("POST /api/invoices/{id}/download-links/", True),  # a draft or a void invoice
        ("POST /api/invoices/{id}/void/", True),
        ("DELETE /api/invoices/{id}/", True),
    ],
)
def test_409_is_declared_where_the_service_can_conflict(paths, name, declared):
    method, path = name.split()

    assert ("409" in paths[path][method.lower()]["responses"]) is declared


def test_403_is_declared_for_staff_only_reads_and_for_every_change(paths):
    for name, operation in operations(paths):
        staff_only = name.startswith(("GET /api/audit/", "GET /api/emails/suppressions/"))
        changes = not name.startswith("GET ")
        assert ("403" in operation["responses"]) == (staff_only or changes), name


def test_cleanup_answers_200_with_its_counts(paths):
    responses = paths["/api/audit/cleanup/"]["delete"]["responses"]

    assert json_schema(responses["200"]) == {"$ref": "#/components/schemas/CleanupResult"}
    assert "204" not in responses


def test_download_links_are_listed_as_a_plain_array_and_made_with_201(paths):
    item = paths["/api/invoices/{id}/download-links/"]

    listed = json_schema(item["get"]["responses"]["200"])
    assert listed == {"type": "array", "items": {"$ref": "#/components/schemas/DownloadLink"}}
    assert "page" not in {p["name"] for p in item["get"]["parameters"]}
    assert [code for code in item["post"]["responses"] if code < "300"] == ["201"]


def test_the_export_declares_both_of_its_file_types(paths):
    export = paths["/api/audit/logs/export/"]["get"]

    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
    assert {"format", "action", "since", "until"} <= {p["name"] for p in export["parameters"]}


def test_every_decimal_has_an_example_that_its_pattern_takes(document):
    decimals = {
        (name, field): schema
        for name, component in document["components"]["schemas"].items()
        for field, schema in component.get("properties", {}).items()
        if schema.get("format") == "decimal"
    }
    assert decimals
    for where, schema in decimals.items():
        assert re.fullmatch(schema["pattern"].strip("^$"), schema["example"]), where
    assert decimals["InvoiceItemRequest", "quantity"]["example"] == "2.00"
    assert decimals["InvoiceItemRequest", "unit_price"]["example"] == "1250.00"
    assert decimals["Invoice", "total"]["example"] == "1250.00"


@pytest.mark.parametrize(
    ("name", "field", "example"),
    [
        ("subtotal", serializers.DecimalField(max_digits=14, decimal_places=2), "1250.00"),
        ("fee", serializers.DecimalField(max_digits=10, decimal_places=3), "1250.000"),
        ("quantity", serializers.DecimalField(max_digits=10, decimal_places=2), "2.00"),
        (
            "tax_rate",
            serializers.DecimalField(max_digits=5, decimal_places=2, max_value=100),
            "20.00",
        ),
        (
            "tax_rate",
            serializers.DecimalField(max_digits=5, decimal_places=4, max_value=1),
            "0.2000",
        ),
        (
            "deposit",
            serializers.DecimalField(max_digits=8, decimal_places=2, max_value=500),
            "100.00",
        ),
    ],
    ids=["money", "three-places", "quantity", "percentage", "fraction", "bounded-money"],
)
def test_a_new_decimal_field_gets_an_example_by_its_name_within_its_bounds(name, field, example):
    """A field added to any serializer gets its example without declaring one."""
    field.bind(name, serializers.Serializer())

    assert decimal_example(field) == example


def test_operation_ids_are_readable_and_unique(paths):
    ids = [operation["operationId"] for _, operation in operations(paths)]

    assert len(ids) == len(set(ids))
    assert [i for i in ids if not re.fullmatch("[a-z]+([A-Z][a-z]+)*", i)] == []
    assert paths["/api/auth/login/"]["post"]["operationId"] == "login"
    assert paths["/api/invoices/{id}/finalize/"]["post"]["operationId"] == "finalizeInvoice"
    assert paths["/api/audit/logs/export/"]["get"]["operationId"] == "exportAuditLogs"
    assert paths["/api/audit/user/{user_id}/logs/"]["get"]["operationId"] == "listUserAuditLogs"


def test_path_ids_are_integers(paths):
    ids = {
        (name, parameter["name"]): parameter["schema"]
        for name, operation in operations(paths)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
        and parameter["name"] != "resource_id"
        and parameter["name"] != "resource_type"
    }
    assert len(ids) > 20
    for where, schema in ids.items():
        assert schema == {"type": "integer", "format": "int64", "minimum": 1}, where


def test_an_answer_requires_every_field_it_has(document):
    """DRF writes every field of a serializer, so a generated client need not test for one."""
    answers = {
        name: component
        for name, component in document["components"]["schemas"].items()
        if "properties" in component and not name.endswith("Request")
    }
    assert {"User", "SignupResponse", "Invoice", "PaginatedAuditLogList"} <= set(answers)
    for name, component in answers.items():
        assert sorted(component.get("required", [])) == sorted(component["properties"]), name


def test_a_patch_body_requires_nothing_and_defaults_nothing(document):
    patches = {
        name: component
        for name, component in document["components"]["schemas"].items()
        if name.startswith("Patched")
    }
    assert "PatchedInvoiceInputRequest" in patches
    for name, component in patches.items():
        assert "required" not in component, name
        assert [f for f, s in component["properties"].items() if "default" in s] == [], name
    create = document["components"]["schemas"]["InvoiceInputRequest"]
    assert "currency" not in create["required"]


def test_json_fields_are_objects_and_lists(document):
    schemas = document["components"]["schemas"]
    an_object = {"type": "object", "additionalProperties": {}, "readOnly": True}

    assert schemas["AuditLog"]["properties"]["metadata"] == an_object
    assert schemas["AdminAction"]["properties"]["details"] == an_object
    assert schemas["Notification"]["properties"]["metadata"] == an_object
    assert schemas["Endpoint"]["properties"]["event_types"]["items"] == {"type": "string"}


def test_field_errors_nest_as_the_answers_do(api):
    """A nested list's messages: the answer is held to the served FieldErrors by the test
    client (tests/contract.py), which fails the request if the shape does not take it."""
    line = {"description": "Work", "quantity": "1", "unit_price": "10.00"}
    invoice = {"client_name": "Acme", "client_email": "ap@acme.test", "due_date": "2030-01-31"}

    response = api.post(
        "/api/invoices/", {**invoice, "items": [line, {**line, "quantity": "x"}]}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"items": {"1": {"quantity": ["A valid number is required."]}}}


def test_the_auth_schemes_say_token_and_the_csrf_header(document):
    schemes = document["components"]["securitySchemes"]

    assert schemes["tokenAuth"]["name"] == "Authorization"
    assert 'required prefix "Token"' in schemes["tokenAuth"]["description"]
    assert "X-CSRFToken" in schemes["cookieAuth"]["description"]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/api/schema.json", "application/vnd.oai.openapi+json"),
        ("/api/schema/?format=json", "application/vnd.oai.openapi+json"),
        ("/api/schema/", "application/vnd.oai.openapi"),
    ],
)
def test_the_schema_is_served_as_json_where_asked(client, path, media_type):
    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type
    if media_type.endswith("+json"):
        assert response.json()["openapi"].startswith("3.")
