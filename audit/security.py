"""Security events derived from the trail: failed logins and the brute force they add up to."""

import datetime

from django.conf import settings
from django.utils import timezone

from audit import context as audit_context
from audit import services
from audit.models import AuditLog


def record_failed_login(*, attempted_email: str | None) -> None:
    """Log the failure (the attempted email, never the password) and raise a
    `security.brute_force_suspected` entry when one account or one IP reaches the threshold
    within the window."""
    email = audit_context.clean_text((attempted_email or "").strip().lower(), 254)
    services.log(
        "user.login_failed",
        target=("account", email[:64]),
        metadata={"attempted_email": email},
        success=False,
    )
    since = timezone.now() - datetime.timedelta(seconds=settings.AUDIT_BRUTE_FORCE_WINDOW_SECONDS)
    failures = AuditLog.objects.filter(action="user.login_failed", created_at__gte=since)
    per_account = failures.filter(resource_type="account", resource_id=email[:64]).count()
    if per_account == settings.AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD:
        _suspect(f"{per_account} failures for {email}", target=("account", email[:64]))
    ip_address = audit_context.current().ip_address
    if ip_address:
        per_ip = failures.filter(ip_address=ip_address).count()
        if per_ip == settings.AUDIT_BRUTE_FORCE_IP_THRESHOLD:
            _suspect(f"{per_ip} failures from {ip_address}", target=("ip", ip_address))


def _suspect(reason: str, *, target) -> None:
    services.log(
        "security.brute_force_suspected", target=target, metadata={"reason": reason}, success=False
    )
