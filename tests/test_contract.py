"""The check that holds every test's answers to the schema (tests/contract.py) refuses each
kind of drift, and lets through an answer the schema describes."""

from types import SimpleNamespace

import pytest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from tests.contract import Contract, Drift, closed

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
        ("/api/unknown/", HttpResponse("<p>", status=404)),  # no route: Django's 404
    ],
)
def test_an_answer_the_schema_describes_passes(contract, path, response):
    contract.check("GET", path, response)


def routed(response, name: str = "thing-detail"):
    """The answer as the test client gives it: with the route the request reached."""
    response.resolver_match = SimpleNamespace(url_name=name)
    return response


def test_head_is_held_to_its_get_without_a_body(contract):
    contract.check("HEAD", "/api/things/7/", routed(JsonResponse({})))
    with pytest.raises(Drift, match=r"HEAD .* answered 418"):
        contract.check("HEAD", "/api/things/7/", routed(HttpResponse(status=418)))


def test_a_route_of_the_api_must_be_an_operation_of_the_schema(contract):
    with pytest.raises(Drift, match="DELETE /api/things/7/ is a route of the API"):
        contract.check("DELETE", "/api/things/7/", routed(HttpResponse(status=204)))
    with pytest.raises(Drift, match="GET /api/secret/ is a route of the API"):
        contract.check("GET", "/api/secret/", routed(JsonResponse({})))
    # A method the route refuses, its OPTIONS description and the schema's own pages are not.
    contract.check("DELETE", "/api/things/7/", routed(HttpResponse(status=405)))
    contract.check("OPTIONS", "/api/things/7/", routed(JsonResponse({})))
    contract.check("GET", "/api/schema/", routed(HttpResponse("openapi: 3.0.3"), "schema"))


def test_the_branches_of_an_all_of_stay_open_and_data_is_left_alone():
    part = {"type": "object", "properties": {"a": {"type": "string"}}}
    example = {"properties": {"x": 1}}

    shut = closed({"allOf": [part, part], "example": example, **part})

    assert shut["allOf"] == [part, part]
    assert shut["example"] == example
    assert shut["additionalProperties"] is False


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
