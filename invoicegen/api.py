"""Shared pieces of the HTTP API: routing, pagination, throttling and error shapes (API.md)."""

import logging

import django_filters
from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from redis.exceptions import RedisError
from rest_framework import exceptions, pagination, routers, status, throttling
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from audit import services as audit
from invoicegen.exceptions import ConflictError, QuotaExceeded

logger = logging.getLogger(__name__)


class OptionalSlashRouter(routers.SimpleRouter):
    """Every route answers with and without its trailing slash."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


class PageSizePagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class TrueFalseField(forms.NullBooleanField):
    """`true` or `false`; anything else is a 400 naming the field, never a filter silently
    dropped (django-filter's BooleanFilter ignores values it does not know)."""

    widget = forms.TextInput

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return {"true": True, "false": False}[str(value).lower()]
        except KeyError:
            raise forms.ValidationError("Must be true or false.", code="invalid") from None


class TrueFalseFilter(django_filters.BooleanFilter):
    field_class = TrueFalseField


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


def _record_denial(exc, view) -> None:
    """Refusals are security events: a 403, or a 404 for an object that exists but belongs
    to someone else (the caller learns nothing; the trail does)."""
    if isinstance(exc, exceptions.PermissionDenied):
        audit.log("security.permission_denied", metadata={"reason": str(exc.detail)}, success=False)
        return
    queryset = getattr(view, "queryset", None)
    lookup = getattr(view, "kwargs", {}).get(getattr(view, "lookup_url_kwarg", None) or "pk")
    if not isinstance(exc, Http404) or queryset is None or lookup is None:
        return
    model = queryset.model
    try:
        exists = model._base_manager.filter(pk=lookup).exists()
    except (ValueError, TypeError, DjangoValidationError):
        return
    if exists:
        audit.log(
            "security.object_access_denied",
            target=(model._meta.model_name, lookup),
            success=False,
        )


def exception_handler(exc, context):
    """DRF's handler, plus the domain errors services raise: conflicts (409) and Django's
    ValidationError (400, keyed by field like a serializer error); refusals are audited."""
    _record_denial(exc, context.get("view"))
    if isinstance(exc, ConflictError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, QuotaExceeded):
        return Response(
            {"detail": str(exc), "limit": exc.limit, "resets_at": exc.resets_at},
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.seconds_left())},
        )
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
