"""Every answer an API test gets is held to the served OpenAPI schema (conftest.py wraps the
test client with it): its status code is one the operation declares, its media type one
declared for that code, its headers those declared, and a JSON body matches the declared shape,
with no field the shape does not name. So a drift between the API and its schema fails the
test that meets it, on either database, and a client generated from the schema can trust it."""

import json
import re
from functools import cached_property

from django.test import RequestFactory
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

METHODS = ("get", "post", "put", "patch", "delete")


class Drift(AssertionError):
    """An answer the schema does not describe."""


def closed(schema):
    """The schema with every object that lists its properties closed to others (a JSON
    Schema object admits any field it does not name; an answer must not have one)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shut = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        shut["additionalProperties"] = False
    return shut


class Contract:
    def __init__(self, document: dict):
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
        operation = self.operation(method, path) if method in METHODS else None
        if operation is None:  # not an operation of the API: a 405, the schema, the admin
            return
        code = response.status_code
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
            if streamed or response.content:
                raise Drift(f"{name} with a body ({media_type}), where it declares none")
            return
        if media_type not in content:
            raise Drift(f"{name} in {media_type or 'no media type'}, not {sorted(content)}")
        if streamed or not (media_type == "application/json" or media_type.endswith("+json")):
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


class ServedContract:
    """The contract of the schema as /api/schema.json serves it, made once per test run."""

    enabled = False

    @cached_property
    def contract(self) -> Contract:
        from invoicegen.urls import SchemaView

        response = SchemaView.as_view()(RequestFactory().get("/api/schema.json"), format="json")
        response.render()
        return Contract(json.loads(response.content))

    def check(self, response) -> None:
        request = response.request
        self.contract.check(request["REQUEST_METHOD"], request["PATH_INFO"], response)
