"""Security events derived from the trail: failed logins, the brute force they add up to and
the lockouts they start. A lockout is kept nowhere but in the trail: a `security.account_locked`
entry younger than AUTH_LOCKOUT_MINUTES means that logins to its email are refused."""

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions

from audit import context as audit_context
from audit import services
from audit.models import AuditLog
from invoicegen.core import api


def _cleaned(attempted_email: str | None) -> str:
    return audit_context.clean_text((attempted_email or "").strip().lower(), 254)


def _account(email: str) -> tuple[str, str]:
    """The target of entries about an attempted email, whether an account has it or not."""
    return "account", email[:64]


def record_failed_login(*, attempted_email: str | None) -> None:
    """Log the failure (the attempted email, never the password) and raise a
    `security.brute_force_suspected` entry when one account or one IP reaches the threshold
    within the window. During a lockout the attempt is logged as `user.login_locked`: no
    failure, so it neither counts towards the next lockout nor extends this one."""
    email = _cleaned(attempted_email)
    locked = lockout_ends(email) is not None
    services.log(
        "user.login_locked" if locked else "user.login_failed",
        target=_account(email),
        metadata={"attempted_email": email},
        success=False,
    )
    if locked:
        return
    since = timezone.now() - datetime.timedelta(seconds=settings.AUDIT_BRUTE_FORCE_WINDOW_SECONDS)
    failures = AuditLog.objects.filter(action="user.login_failed", created_at__gte=since)
    per_account = failures.filter(resource_type="account", resource_id=email[:64]).count()
    if per_account == settings.AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD:
        _suspect(f"{per_account} failures for {email}", target=_account(email))
    ip_address = audit_context.current().ip_address
    if ip_address:
        per_ip = failures.filter(ip_address=ip_address).count()
        if per_ip == settings.AUDIT_BRUTE_FORCE_IP_THRESHOLD:
            _suspect(f"{per_ip} failures from {ip_address}", target=("ip", ip_address))


def _suspect(reason: str, *, target) -> None:
    services.log(
        "security.brute_force_suspected", target=target, metadata={"reason": reason}, success=False
    )


def _lockout_window() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.AUTH_LOCKOUT_MINUTES)


def _recent_entries(attempted_email: str, action: str):
    resource_type, resource_id = _account(_cleaned(attempted_email))
    return AuditLog.objects.filter(
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        created_at__gt=timezone.now() - _lockout_window(),
    )


def lockout_ends(attempted_email: str) -> datetime.datetime | None:
    """When the lockout of this email ends, if one is in force."""
    started = (
        _recent_entries(attempted_email, "security.account_locked")
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    return None if started is None else started + _lockout_window()


def recent_failed_logins(attempted_email: str) -> int:
    """Failed logins for this email within the last AUTH_LOCKOUT_MINUTES. A lockout lasts as
    long as that window and records no failures, so none counted here predates the end of the
    last lockout."""
    return _recent_entries(attempted_email, "user.login_failed").count()


def record_lockout(attempted_email: str, *, failures: int) -> datetime.datetime:
    """Start a lockout of this email; returns when it ends."""
    email = _cleaned(attempted_email)
    entry = services.log(
        "security.account_locked",
        target=_account(email),
        metadata={
            "attempted_email": email,
            "failures": failures,
            "minutes": settings.AUTH_LOCKOUT_MINUTES,
        },
        success=False,
    )
    return entry.created_at + _lockout_window()


def record_refusal(exc, view) -> None:
    """Refusals of the API are security events: a 403, or a 404 for an object that exists but
    belongs to someone else (the caller learns nothing; the trail does)."""
    if isinstance(exc, exceptions.PermissionDenied):
        services.log(
            "security.permission_denied", metadata={"reason": str(exc.detail)}, success=False
        )
        return
    queryset = getattr(view, "queryset", None)
    lookup = getattr(view, "kwargs", {}).get(getattr(view, "lookup_url_kwarg", None) or "pk")
    if not isinstance(exc, Http404) or queryset is None or lookup is None:
        return
    model = queryset.model
    try:
        exists = model._base_manager.filter(pk=lookup).exists()
    except (ValueError, TypeError, ValidationError):
        return
    if exists:
        services.log(
            "security.object_access_denied",
            target=(model._meta.model_name, lookup),
            success=False,
        )


def exception_handler(exc, context):
    """The API's error answers (core's handler), with refusals recorded in the trail."""
    record_refusal(exc, context.get("view"))
    return api.exception_handler(exc, context)
