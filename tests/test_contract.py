"""The check that holds every test's answers to the schema (tests/contract.py) refuses each
kind of drift, and lets through an answer the schema describes."""

import pytest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from tests.contract import Contract, Drift

pytestmark = pytest.mark.django_db

JSON = "application/json"
ERROR = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
DOCUMENT = {
    "paths": {
        "/api/things/{id}/": {
            "get": {
                "operationId": "getThing",
                "responses": {
                    "200": {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                    "204": {"description": "Nothing."},
                    "429": {**ERROR, "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                },
            }
        },
        "/api/things/count/": {
            "get": {
                "operationId": "countThings",
                "responses": {"200": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
            }
        },
    },
    "components": {
        "schemas": {
            "Thing": {
                "type": "object",
                "required": ["id", "name"],
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string", "nullable": True},
                },
            },
            "Error": {
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"type": "string"}},
            },
        }
    },
}


@pytest.fixture
def contract():
    return Contract(DOCUMENT)


@pytest.mark.parametrize(
    "path, response",
    [
        ("/api/things/7/", JsonResponse({"id": 7, "name": "a"})),
        ("/api/things/7", JsonResponse({"id": 7, "name": None})),
        ("/api/things/7/", HttpResponse(status=204)),
        ("/api/things/count/", HttpResponse("a,b\n", content_type="text/csv")),
        ("/api/things/count/", StreamingHttpResponse(iter(["a"]), content_type="text/csv")),
        ("/api/unknown/", HttpResponse("<p>", status=500)),  # not an operation: not checked
    ],
)
def test_an_answer_the_schema_describes_passes(contract, path, response):
    contract.check("GET", path, response)


def too_many() -> HttpResponse:
    response = JsonResponse({"detail": "Slow down."}, status=429)
    del response["Retry-After"]
    return response


@pytest.mark.parametrize(
    "response, says",
    [
        (JsonResponse({"detail": "boom"}, status=500), "does not declare"),
        (HttpResponse("{}", content_type="text/html"), "in text/html"),
        (JsonResponse({"id": 7}), "'name' is a required property"),
        (JsonResponse({"id": 7, "name": "a", "extra": 1}), "'extra' was unexpected"),
        (JsonResponse({"id": "7", "name": "a"}), "'7' is not of type 'integer'"),
        (HttpResponse("[]", content_type=JSON), "is not of type 'object'"),
        (HttpResponse("{", content_type=JSON), "not JSON"),
        (HttpResponse("x", status=204), "declares none"),
        (too_many(), "without its declared Retry-After header"),
    ],
)
def test_each_kind_of_drift_is_refused(contract, response, says):
    with pytest.raises(Drift, match=says):
        contract.check("GET", "/api/things/7/", response)


def test_a_fixed_segment_is_not_taken_for_a_parameter(contract):
    with pytest.raises(Drift, match="countThings"):
        contract.check("GET", "/api/things/count/", JsonResponse({"id": 1, "name": "a"}))


def test_the_test_client_checks_each_answer_against_the_served_schema(api, monkeypatch):
    """End to end: an answer that drifts from the served schema fails the request's test."""
    monkeypatch.setattr("notifications.services.unread_count", lambda user: "many")

    with pytest.raises(Drift, match=r"countUnreadNotifications.*'many' is not of type"):
        api.get("/api/notifications/unread-count/")
