"""The OpenAPI schema declares every answer an operation can give, its errors included.

Views declare their success answers and the errors only they know of (a 409 from a service, a
404 without an id in the path) with the responses below; AutoSchema adds the errors that follow
from how the operation is built: its body, query, authentication, permissions, throttles and
path, and a 503 for the database being unreachable, which any operation can meet.
"""

import json
from decimal import Decimal

from django.conf import settings
from drf_spectacular import openapi
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.plumbing import (
    ResolvedComponent,
    is_list_serializer,
    is_patched_serializer,
)
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

FIELD_ERRORS = {
    "type": "object",
    "description": (
        "Messages by field name (`non_field_errors` for the body as a whole); the messages "
        "of a nested list or object are a list or object of such objects."
    ),
    "additionalProperties": {
        "anyOf": [
            {
                "type": "array",
                "items": {
                    "anyOf": [{"type": "string"}, {"$ref": "#/components/schemas/FieldErrors"}]
                },
            },
            {"$ref": "#/components/schemas/FieldErrors"},
        ]
    },
}
BAD_INPUT = {
    "anyOf": [
        {"$ref": "#/components/schemas/Error"},
        {"$ref": "#/components/schemas/FieldErrors"},
    ]
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
OWN_PERMISSIONS = (permissions.AllowAny, permissions.IsAuthenticated)
# Django's and DRF's text fields refuse NUL characters (PostgreSQL cannot store them). The
# empty string is left to each field: spectacular adds it as an alternative for a blank one.
WITHOUT_NUL = "^[^\\x00]+$"
# A path's id as its route takes it (`[0-9]+`): the number of a row (one past a bigint is
# no row's: a 404).
DIGITS = "^[0-9]+$"
ROW_ID = {"type": "integer", "format": "int64", "minimum": 1}


# Decimal examples by a word of the field's name; any other decimal is an amount of money.
DECIMAL_EXAMPLES = {"quantity": Decimal(2), "rate": Decimal(20), "percent": Decimal(20)}
MONEY_EXAMPLE = Decimal(1250)


def decimal_example(field: serializers.DecimalField) -> str:
    """A value a person would recognise, written as the API writes the field (`1250.00` for
    money, `2.00` for a quantity, `20.00` for a rate), where spectacular's example would be
    one made up from the pattern. Within the field's largest value: a fifth of it."""
    name = field.field_name or ""
    value = next((v for word, v in DECIMAL_EXAMPLES.items() if word in name), MONEY_EXAMPLE)
    if field.max_value is not None and value > field.max_value:
        value = Decimal(field.max_value) / 5
    if field.decimal_places is None:
        return str(value)
    return f"{value:.{field.decimal_places}f}"


def refuse_nul(schema: dict) -> None:
    """A free text's schema says what its field says: no NUL character."""
    if schema.get("type") == "string" and not {"format", "enum", "pattern", "anyOf"} & set(schema):
        schema["pattern"] = WITHOUT_NUL


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class QuotaErrorSerializer(ErrorSerializer):
    limit = serializers.IntegerField()
    resets_at = serializers.DateTimeField()


CONFLICT = OpenApiResponse(
    ErrorSerializer, description="The object's state does not allow this operation."
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="The object does not exist.")
INCOMPLETE = OpenApiResponse(
    BAD_INPUT, description="The object lacks what this operation needs, named by field."
)


class BoundedFilterExtension(DjangoFilterExtension):
    """django-filter's parameters with the bounds their form fields enforce, so that the
    schema and the filter refuse the same values."""

    priority = 1

    def resolve_filter_field(self, auto_schema, model, filterset_class, field_name, filter_field):
        parameters = super().resolve_filter_field(
            auto_schema, model, filterset_class, field_name, filter_field
        )
        field = filter_field.field
        bounds = {
            "maxLength": getattr(field, "max_length", None),
            "minimum": getattr(field, "min_value", None),
            "maximum": getattr(field, "max_value", None),
        }
        for parameter in parameters:
            parameter["schema"].update({k: v for k, v in bounds.items() if v is not None})
            refuse_nul(parameter["schema"])
        return parameters


class DecimalFieldExtension(OpenApiSerializerFieldExtension):
    """The pattern the field checks, where spectacular's admits "", "-" and "."."""

    target_class = "invoicegen.core.json_fields.DecimalField"

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "format": "decimal", "pattern": self.target.pattern}


class SessionScheme(OpenApiAuthenticationExtension):
    """Django's session, as the admin and a SPA on this site sign in, with what DRF asks of
    it: the CSRF token on every request that changes something."""

    target_class = "rest_framework.authentication.SessionAuthentication"
    name = "cookieAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": (
                "Django's session cookie. A request that changes something (POST, PUT, PATCH, "
                f"DELETE) also sends the `{settings.CSRF_COOKIE_NAME}` cookie's value in the "
                "`X-CSRFToken` header, else it is refused with 403."
            ),
        }


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        self.registry.register_on_missing(
            ResolvedComponent(
                name="FieldErrors",
                type=ResolvedComponent.SCHEMA,
                object="FieldErrors",
                schema=FIELD_ERRORS,
            )
        )
        for parameter in operation.get("parameters", []):
            # Django REST framework, django-filter and the paginators take `?name=` for an
            # optional parameter as if it were absent.
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
            if parameter["in"] == "path" and parameter["schema"].get("pattern") == DIGITS:
                parameter["schema"] = dict(ROW_ID)
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation["responses"]
        for code, (description, schema) in self._errors(operation).items():
            responses.setdefault(
                str(code),
                {
                    "content": {"application/json": {"schema": schema or error}},
                    "description": description,
                },
            )
        for code in ("429", "503"):  # declared by the view or here: either way, when to retry
            if code in responses:
                responses[code].setdefault("headers", RETRY_AFTER)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _errors(self, operation) -> dict[int, tuple[str, dict | None]]:
        """Status code -> (description, schema or None for {"detail"})."""
        view = self.view
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        has_query = any(p["in"] == "query" for p in parameters)
        anonymous = any(isinstance(p, permissions.AllowAny) for p in view.get_permissions())
        restricted = any(not isinstance(p, OWN_PERMISSIONS) for p in view.get_permissions())
        changes = self.method not in permissions.SAFE_METHODS
        errors = {}
        bad = ["a body that is not JSON", "fields that are wrong"] if has_body else []
        if has_query:
            bad.append("query parameters that are wrong or unknown")
        if bad:
            errors[400] = (f"Bad input, named where it has a name: {', '.join(bad)}.", BAD_INPUT)
        errors[401] = (
            "A token that is not valid (this operation needs none)."
            if anonymous
            else "No credentials, or a token or session that is not valid.",
            None,
        )
        if restricted or changes:
            refusals = ["the caller may not do this"] if restricted else []
            if changes:
                refusals.append("a session without its CSRF token")
            errors[403] = (f"Forbidden: {' or '.join(refusals)}.", None)
        missing = (
            ["no such object of the caller's"] if any(p["in"] == "path" for p in parameters) else []
        )
        if self._paginates():
            missing.append("a page past the last or a cursor this API did not make")
        if missing:
            errors[404] = (f"Not found: {' or '.join(missing)}.", None)
        errors[406] = ("The Accept header names no type this operation answers.", None)
        if has_body:
            errors[413] = ("The body exceeds the size limit.", None)
            errors[415] = ("The body is not application/json.", None)
        if view.get_throttles():
            errors[429] = ("Too many requests; retry later.", None)
        errors[503] = ("The database is unreachable; retry later.", None)
        return errors

    def get_operation_id(self) -> str:
        """A view routed on several paths names each route's operation (its `operation_id`
        given to as_view()); the rest name theirs with extend_schema."""
        return getattr(self.view, "operation_id", None) or super().get_operation_id()

    def _map_basic_serializer(self, serializer, direction):
        """An answer holds every field its serializer declares (DRF writes each one, null
        where there is nothing), so each is required there: a client need not test for it.

        A request's default is said in words: client generators take a field with a
        `default` for one the client must send (openapi-typescript does, unless told not to),
        and a PATCH changes the fields it names only, so no default applies there at all."""
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "response" and schema.get("properties"):
            schema["required"] = sorted(schema["properties"])
        if direction == "request":
            patch = is_patched_serializer(serializer, direction)
            for field in schema.get("properties", {}).values():
                default = next(
                    (s.pop("default") for s in [field, *field.get("oneOf", [])] if "default" in s),
                    None,
                )
                if default is not None and not patch:
                    said = f"Left out: `{json.dumps(default)}`."
                    field["description"] = f"{field.get('description', '')}\n\n{said}".strip()
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """A nested list's bounds, which spectacular leaves out; text without NUL; decimals
        with an example."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema and isinstance(field, serializers.DecimalField):
            schema.setdefault("example", decimal_example(field))
        if schema and direction == "request":
            refuse_nul(schema)
        if schema and is_list_serializer(field):
            if not field.allow_empty or field.min_length:
                schema["minItems"] = max(field.min_length or 0, 0 if field.allow_empty else 1)
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
        return schema

    def _paginates(self) -> bool:
        return self._is_list_view() and self._get_paginator() is not None
