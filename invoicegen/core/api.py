"""Shared pieces of the HTTP API: routing, pagination, throttling and error shapes (API.md)."""

import datetime
import logging
import re
from decimal import Decimal

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django_filters.rest_framework import DjangoFilterBackend
from redis.exceptions import RedisError
from rest_framework import exceptions, pagination, routers, serializers, status, throttling
from rest_framework.fields import empty
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from invoicegen.core.exceptions import ConflictError, TryLater

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # a bigint
# Query values as the schema writes an integer and a date-time.
INTEGER = re.compile("-?[0-9]+")
RFC_3339 = re.compile(
    "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class OptionalSlashRouter(routers.SimpleRouter):
    """Every route answers with and without its trailing slash."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


def _query_integer(request, name: str, **bounds) -> int | None:
    """The query parameter `name` as an integer within `bounds`, None if absent or empty (as
    DRF takes an empty optional parameter); else a 400 naming it."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    field = serializers.IntegerField(**bounds)
    try:
        if not INTEGER.fullmatch(raw):  # int() would also take " 5", "1_000" and other digits
            field.fail("invalid")
        return field.run_validation(raw)
    except exceptions.ValidationError as error:
        raise exceptions.ValidationError({name: error.detail}) from None


PAGING = ("page_query_param", "page_size_query_param", "cursor_query_param")


def refuse_unknown_parameters(request, view) -> None:
    """A list refuses a query parameter it does not take (a 400 naming it, with those it
    takes), where a misspelt filter would answer the whole list as if it had applied: it
    takes its filters, its paginator's parameters and the view's own `query_parameters`."""
    filterset_class = getattr(view, "filterset_class", None)
    taken = {
        *(filterset_class.base_filters if filterset_class else ()),
        *getattr(view, "query_parameters", ()),
        *(getattr(view.paginator, name, None) for name in PAGING),
    } - {None}
    if unknown := sorted(request.query_params.keys() - taken):
        message = f"Unknown parameter; this list takes {', '.join(sorted(taken))}."
        raise exceptions.ValidationError({name: [message] for name in unknown})


class BoundedPageSize:
    """`page_size` that is not a positive integer is a 400 naming it, where DRF would quietly
    answer a page of the default size; above max_page_size it is capped, as API.md says. A
    page refuses a query parameter its list does not take."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        refuse_unknown_parameters(request, view)
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        size = _query_integer(request, self.page_size_query_param, min_value=1)
        return self.page_size if size is None else min(size, self.max_page_size)

    def query_bounds(self) -> dict[str, dict]:
        return {self.page_size_query_param: {"minimum": 1, "default": self.page_size}}

    def get_paginated_response_schema(self, schema):
        """A page has each of its keys (`next` and `previous` null at an end)."""
        page = super().get_paginated_response_schema(schema)
        page["required"] = sorted(page["properties"])
        return page

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = self.query_bounds()
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page, at most {self.max_page_size} (a larger number is "
                    f"taken as {self.max_page_size})."
                )
        return parameters


class PageSizePagination(BoundedPageSize, pagination.PageNumberPagination):
    """Numbered pages; a page that is not a positive integer is a 400 naming `page`, a page
    past the last one DRF's 404."""

    def get_page_number(self, request, paginator):
        number = _query_integer(request, self.page_query_param, min_value=1)
        return 1 if number is None else number

    def query_bounds(self) -> dict[str, dict]:
        return {**super().query_bounds(), self.page_query_param: {"minimum": 1}}


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend for lists only: DRF's get_object() filters too, so a list's
    filters would otherwise apply to a detail route (`/api/invoices/7/?status=draft` a 404),
    which the schema does not say. A list refuses a query parameter it does not take (an
    export included, which has no pages). The filterset is skipped when the query names none
    of its filters: the one it would build (a deep copy of every filter, a form to validate)
    would change nothing, at the cost of a good part of an unfiltered list's time."""

    def filter_queryset(self, request, queryset, view):
        lookup = view.lookup_url_kwarg or view.lookup_field
        if getattr(view, "detail", False) or lookup in view.kwargs:  # one object: get_object()
            return queryset
        refuse_unknown_parameters(request, view)
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None or request.query_params.keys().isdisjoint(
            filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)


class TrueFalseField(forms.NullBooleanField):
    """`true` or `false`; anything else is a 400 naming the field, never a filter silently
    dropped (django-filter's BooleanFilter ignores values it does not know)."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return {"true": True, "false": False}[str(value)]
        except KeyError:
            raise forms.ValidationError("Must be true or false.", code="invalid") from None


class TrueFalseFilter(django_filters.BooleanFilter):
    field_class = TrueFalseField


class TrueFalseQueryField(serializers.BooleanField):
    """A query's boolean, `true` or `false` as the schema writes it; DRF's field would also
    take 1, yes, on, True and their opposites."""

    default_empty_html = empty  # absent is the default, not an unticked checkbox's False

    def to_internal_value(self, data):
        if data not in ("true", "false"):
            self.fail("invalid", input=data)
        return data == "true"


class UTCDateTimeField(django_filters.fields.IsoDateTimeField):
    def to_python(self, value):
        if value not in self.empty_values and not RFC_3339.fullmatch(str(value)):
            raise forms.ValidationError(
                "Enter a date and time with its offset, such as 2026-01-31T09:00:00Z.",
                code="invalid",
            )
        moment = super().to_python(value and str(value).upper())  # RFC 3339 allows "t", "z"
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError("Out of the range of dates.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An RFC 3339 date-time as the schema says (Python's parser would also take a date alone,
    spaces and more), compared in UTC: PostgreSQL refuses a UTC offset past 15:59, and a moment
    whose UTC date falls outside years 1-9999 is a 400 here, where converting it for the
    database would overflow (a 500)."""

    field_class = UTCDateTimeField


class IntegerQueryField(forms.IntegerField):
    def to_python(self, value):
        if value not in self.empty_values and not INTEGER.fullmatch(str(value)):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class IdFilter(django_filters.NumberFilter):
    """An id: a positive integer within a bigint, written in ASCII digits, else a 400 naming
    the filter, where a number filter would truncate a decimal and pass SQLite an integer it
    cannot hold (a 500)."""

    field_class = IntegerQueryField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=MAX_ID, **kwargs)


class FailOpen:
    """A throttle whose counter store (Redis) is down lets requests through rather than
    failing them: an outage of the cache must not become an outage of the API."""

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            logger.warning("throttle %s skipped: its cache is unavailable", self.scope)
            return True


class ClientIPThrottle(FailOpen, throttling.SimpleRateThrottle):
    """Counts requests per client IP (through TRUSTED_PROXY_COUNT proxies), signed in or not."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AuthThrottle(ClientIPThrottle):
    scope = "auth"


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The body is too large."
    default_code = "request_too_large"


def exception_handler(exc, context):
    """DRF's handler, plus the domain errors services raise: conflicts (409), lockouts and
    quotas (429 with Retry-After) and Django's ValidationError (400, keyed by field like a
    serializer error)."""
    if isinstance(exc, ConflictError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, TryLater):
        return Response(
            {"detail": str(exc), **exc.details()},
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.seconds_left())},
        )
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(f"The body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")
    if isinstance(exc, DjangoValidationError):
        messages = (
            exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
        )
        detail = {
            api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field: errors
            for field, errors in messages.items()
        }
        exc = exceptions.ValidationError(detail)
    return drf_exception_handler(exc, context)


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as DRF's DecimalField with 2 decimal places writes it: a string, rounded half
    to even (the default context's rounding, which the field's quantize() uses)."""
    if value is None:
        return None
    return f"{value:.2f}"


def datetime_text(value: datetime.datetime | None) -> str | None:
    """A moment as DRF's DateTimeField writes it: ISO 8601 in UTC, with a Z."""
    if value is None:
        return None
    text = value.astimezone(datetime.UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
