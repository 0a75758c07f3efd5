"""The throttles of a login, the API's and the admin's alike: per client IP (the `auth` scope of
every anonymous auth endpoint) and per attempted account. Both count in the Django cache as DRF
does, and let requests through when the cache is down (FailOpen)."""

from collections.abc import Mapping

from django.utils.crypto import salted_hmac
from rest_framework import throttling
from rest_framework.request import Request

from invoicegen.accounts.models import normalize_email
from invoicegen.core.api import AuthThrottle, FailOpen


def attempted_email(request) -> str:
    """The email a login request tries: `email` in the API's JSON, `username` in the admin's
    form; "" when there is none (the form or serializer then answers the error)."""
    if isinstance(request, Request):
        data, field = request.data, "email"
    else:
        data, field = request.POST, "username"
    value = data.get(field) if isinstance(data, Mapping) else None
    return normalize_email(value) if isinstance(value, str) else ""


class LoginAccountThrottle(FailOpen, throttling.SimpleRateThrottle):
    """Counts logins per attempted email, from any IP, whether an account has it or not. The
    cache key holds a keyed hash of the email: a dump of the cache lists no addresses."""

    scope = "login_account"

    def get_cache_key(self, request, view):
        email = attempted_email(request)
        if not email:
            return None
        ident = salted_hmac(self.scope, email, algorithm="sha256").hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


LOGIN_THROTTLES = [AuthThrottle, LoginAccountThrottle]


def login_wait(request) -> float | None:
    """Seconds before this login may be tried, if a throttle refuses it now: DRF's
    APIView.check_throttles, for a login that is not a DRF view (the admin's)."""
    waits = []
    for throttle in (throttle_class() for throttle_class in LOGIN_THROTTLES):
        if not throttle.allow_request(request, None):
            waits.append(throttle.wait())
    return max(waits, default=None)
