"""Who is acting, from where: the request context every audit entry is stamped with.

Middleware binds it per request; Celery carries it in task headers so that entries written by a
worker name the user and request that queued the task. Values are cleaned once, here: control
characters removed, lengths bounded, tokens in paths redacted, the client IP taken through
TRUSTED_PROXY_COUNT proxies only.
"""

import getpass
import ipaddress
import logging
import os
import re
import sys
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace

from django.conf import settings

from invoicegen.core.redaction import redact_secrets

MAX_USER_AGENT = 512
MAX_PATH = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def clean_text(value: str | None, limit: int) -> str:
    """One line of at most `limit` characters: control characters (CR, LF, ...) cannot forge
    lines in a log, a CSV or a terminal."""
    return _CONTROL.sub(" ", value or "")[:limit]


def clean_path(path: str) -> str:
    return clean_text(redact_secrets(path or ""), MAX_PATH)


def clean_ip(value: str | None) -> str | None:
    try:
        return ipaddress.ip_address((value or "").strip()).compressed
    except ValueError:
        return None


def client_ip(meta: dict) -> str | None:
    """REMOTE_ADDR, or the address the nearest trusted proxy saw: X-Forwarded-For entries are
    appended by each proxy, so with N trusted proxies the client is the Nth from the right and
    anything further left may be forged by the client."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if proxies and len(forwarded) >= proxies:
        return clean_ip(forwarded[-proxies])
    return clean_ip(meta.get("REMOTE_ADDR"))


def request_id_from(header: str | None) -> str:
    return header if header and _REQUEST_ID.match(header) else uuid.uuid4().hex


@dataclass(frozen=True)
class AuditContext:
    user_id: int | None = None
    user_email: str = ""
    ip_address: str | None = None
    user_agent: str = ""
    method: str = ""
    path: str = ""
    request_id: str = ""
    origin: str = "system"  # "api", "admin", "web", "task", "command", "system"
    request: object = None  # the live HttpRequest: its user is known only after DRF auth

    def actor(self) -> tuple[int | None, str]:
        user = getattr(self.request, "user", None)
        if user is not None and user.is_authenticated:
            return user.pk, user.email
        return self.user_id, self.user_email

    def to_headers(self) -> dict:
        user_id, user_email = self.actor()
        values = asdict(replace(self, request=None, user_id=user_id, user_email=user_email))
        values.pop("request")
        return values


def _os_user() -> str:
    """The login name, or the uid of a process whose user has no passwd entry (a container
    run with an arbitrary --user), where getpass.getuser() raises."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _process_context() -> AuditContext:
    """Outside a request or task: a management command (its name, never its arguments, which
    may hold secrets) and the operating-system user who ran it, or the plain system."""
    if len(sys.argv) > 1 and sys.argv[0].endswith("manage.py"):
        return AuditContext(
            path=clean_text(f"manage.py {sys.argv[1]}", MAX_PATH),
            user_agent=clean_text(f"manage.py (os user {_os_user()})", MAX_USER_AGENT),
            origin="command",
        )
    return AuditContext()


_current: ContextVar[AuditContext | None] = ContextVar("audit_context", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps a log record with the request id of the request or task it belongs to
    (settings.LOGGING; shown by LOG_FORMAT=json)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        if context is not None:
            record.request_id = context.request_id
        else:  # Django's "Not Found: ..." is logged once the middleware has answered
            record.request_id = getattr(getattr(record, "request", None), "request_id", "")
        return True


_process = _process_context()


def current() -> AuditContext:
    return _current.get() or _process


@contextmanager
def bind(context: AuditContext):
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def from_request(request, *, origin: str) -> AuditContext:
    meta = request.META
    return AuditContext(
        ip_address=client_ip(meta),
        user_agent=clean_text(meta.get("HTTP_USER_AGENT"), MAX_USER_AGENT),
        method=clean_text(request.method, 10),
        path=clean_path(request.get_full_path()),
        request_id=request_id_from(meta.get("HTTP_X_REQUEST_ID")),
        origin=origin,
        request=request,
    )


def from_headers(values: dict, *, origin: str = "task") -> AuditContext:
    fields = {key: values.get(key) for key in AuditContext.__dataclass_fields__ if key != "request"}
    fields = {key: value for key, value in fields.items() if value is not None}
    return AuditContext(**{**fields, "origin": origin})
