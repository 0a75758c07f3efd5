"""Every answer an API test gets through Django's or DRF's test client is held to the served
OpenAPI schema (conftest.py wraps the client with it): a route of the API is an operation of
the schema, the status code one the operation declares, the media type one declared for that
code, its headers those declared, and a JSON body matches the declared shape, with no field
the shape does not name. So a drift between the API and its schema fails the test that meets
it, on either database, and a client generated from the schema can trust it. (Requests to a
live server, as the generated clients' tests make, are checked by those clients.)"""

import json
import re

from django.test import RequestFactory
from django.urls import Resolver404
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

METHODS = ("get", "post", "put", "patch", "delete")
# Routes of the API that are not operations: the schema and its pages.
NOT_OPERATIONS = {"schema", "schema-json", "docs"}
# Keywords whose values are data, not schemas: nothing in them is closed.
DATA = {"default", "enum", "example", "examples"}


class Drift(AssertionError):
    """An answer the schema does not describe."""


def closed(schema, *, shut: bool = True):
    """The schema with every object that lists its properties closed to others (a JSON
    Schema object admits any field it does not name; an answer must not have one). The
    branches of an allOf stay open: each names only its part of the object."""
    if isinstance(schema, list):
        return [closed(item, shut=shut) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {
        key: value if key in DATA else closed(value, shut=key != "allOf")
        for key, value in schema.items()
    }
    if shut and "properties" in schema and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    return result


def route_of(response):
    """The route the request reached (the test client resolves it lazily), None for none."""
    try:
        return getattr(response, "resolver_match", None) and response.resolver_match.url_name
    except Resolver404:
        return None


class Contract:
    def __init__(self, document: dict):
        self.paths = document["paths"]
        self.components = closed(document["components"])
        routes = []
        for template, item in document["paths"].items():
            pattern = re.escape(template.rstrip("/"))
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
            routes.append((template.count("{"), re.compile(f"{pattern}/?"), item))
        # A fixed segment before a parameter: `notifications/unread-count/` is not an id.
        self.routes = sorted(routes, key=lambda route: route[0])
        self.validators = {}

    def operation(self, method: str, path: str) -> dict | None:
        for _, pattern, item in self.routes:
            if pattern.fullmatch(path):
                return item.get(method)
        return None

    def check(self, method: str, path: str, response) -> None:
        """Raise Drift where the answer to `method path` is not one the schema declares."""
        method = method.lower()
        head = method == "head"
        operation = self.operation("get" if head else method, path)
        code = response.status_code
        if operation is None:
            route = route_of(response)
            if route is None or code == 405 or method == "options":
                return  # no route, a method the route refuses, or a route's description
            if path.startswith("/api/") and route not in NOT_OPERATIONS:
                raise Drift(f"{method.upper()} {path} is a route of the API, not in the schema")
            return
        name = f"{method.upper()} {path} ({operation['operationId']}) answered {code}"
        declared = operation["responses"].get(str(code))
        if declared is None:
            raise Drift(f"{name}, which it does not declare: {sorted(operation['responses'])}")
        for header in declared.get("headers", {}):
            if not response.has_header(header):
                raise Drift(f"{name} without its declared {header} header")
        content = declared.get("content", {})
        media_type = response.get("Content-Type", "").split(";")[0].strip()
        streamed = getattr(response, "streaming", False)
        if not content:
            if not head and (streamed or response.content):
                raise Drift(f"{name} with a body ({media_type}), where it declares none")
            return
        if media_type not in content:
            raise Drift(f"{name} in {media_type or 'no media type'}, not {sorted(content)}")
        json_body = media_type == "application/json" or media_type.endswith("+json")
        if head or streamed or not json_body:
            return
        try:
            body = json.loads(response.content)
        except ValueError:
            raise Drift(
                f"{name} with a body that is not JSON: {response.content[:200]!r}"
            ) from None
        validator = self.validator(operation, str(code), media_type, content)
        problems = list(validator.iter_errors(body))
        if problems:
            details = "; ".join(
                f"at {'/'.join(map(str, problem.absolute_path)) or 'the top'}: {problem.message}"
                for problem in problems[:5]
            )
            raise Drift(f"{name} with a body its schema refuses: {details}")

    def validator(self, operation, code, media_type, content):
        key = (operation["operationId"], code, media_type)
        if key not in self.validators:
            schema = {**closed(content[media_type]["schema"]), "components": self.components}
            self.validators[key] = OAS30ReadValidator(schema, format_checker=oas30_format_checker)
        return self.validators[key]


def served_contract() -> Contract:
    """The contract of the schema as /api/schema.json serves it."""
    from invoicegen.urls import SchemaView

    response = SchemaView.as_view()(RequestFactory().get("/api/schema.json"), format="json")
    response.render()
    return Contract(json.loads(response.content))
