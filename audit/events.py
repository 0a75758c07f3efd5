"""The audit vocabulary: every action the trail may hold, with its category and a human template.

Names are stable dotted strings (`invoice.sent`); an entry keeps them verbatim, so renaming one
here would orphan history. Templates are formatted with the entry's fields and metadata.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    name: str
    category: str
    template: str
    security: bool = False

    def describe(self, **values) -> str:
        try:
            return self.template.format_map(_Blank(values))
        except (ValueError, IndexError):  # a malformed value never stops an entry
            return self.template


class _Blank(dict):
    def __missing__(self, key):
        return ""


REGISTRY: dict[str, Event] = {}


def register(name: str, category: str, template: str, *, security: bool = False) -> Event:
    event = Event(name, category, template, security)
    REGISTRY[name] = event
    return event


def get(name: str) -> Event:
    """The registered event; an unregistered name still gets logged, under its prefix."""
    if name in REGISTRY:
        return REGISTRY[name]
    return Event(name, name.split(".", 1)[0], name)


def security_actions() -> list[str]:
    return sorted(name for name, event in REGISTRY.items() if event.security)


for _name, _category, _template, _security in [
    ("user.signup", "auth", "{actor} signed up", False),
    ("user.login", "auth", "{actor} logged in", False),
    ("user.login_failed", "auth", "Failed login for {attempted_email}", True),
    ("user.login_locked", "auth", "Login for {attempted_email} refused: locked out", True),
    ("user.logout", "auth", "{actor} logged out", False),
    ("user.password_changed", "auth", "{actor} changed their password", True),
    ("user.password_reset_requested", "auth", "Password reset requested for {target}", True),
    ("user.password_reset", "auth", "Password of {target} reset by email link", True),
    ("user.email_verified", "auth", "{target} verified their email", True),
    ("user.profile_updated", "account", "{actor} updated their profile", False),
    ("user.deleted", "account", "User {target} deleted", True),
    ("invoice.created", "invoice", "{actor} created invoice {target}", False),
    ("invoice.updated", "invoice", "{actor} updated invoice {target}", False),
    ("invoice.finalized", "invoice", "{actor} finalized invoice {target}", False),
    ("invoice.sent", "invoice", "{actor} sent invoice {target}", False),
    ("invoice.paid", "invoice", "Invoice {target} paid in full", False),
    ("invoice.voided", "invoice", "{actor} voided invoice {target}", False),
    ("invoice.send_refused", "invoice", "Sending invoice {target} refused: {reason}", True),
    ("payment.processed", "payment", "Payment {target} recorded", False),
    ("payment.failed", "payment", "Payment on {target} refused: {reason}", False),
    ("subscription.activated", "subscription", "{actor} activated subscription {target}", False),
    ("subscription.cancelled", "subscription", "{actor} cancelled subscription {target}", False),
    ("subscription.renewed", "subscription", "Subscription {target} renewed", False),
    ("subscription.expired", "subscription", "Subscription {target} expired", False),
    ("download.link_created", "download", "{actor} created a download link", False),
    ("download.succeeded", "download", "Invoice downloaded through a link", False),
    ("download.denied", "download", "Download refused: {reason}", True),
    ("download.link_revoked", "download", "{actor} revoked a download link", False),
    ("notification.test", "notification", "{actor} sent a test notification", False),
    ("admin.notification_broadcast", "admin", "{actor} messaged {count} user(s)", False),
    ("email.failed", "email", "Email to {to} failed: {reason}", False),
    ("admin.email_resent", "admin", "{actor} resent {target}", False),
    ("admin.email_retried", "admin", "{actor} retried {target}", False),
    ("admin.user_created", "admin", "{actor} created user {target} in the admin", False),
    ("admin.user_updated", "admin", "{actor} changed user {target} in the admin", True),
    ("admin.user_deleted", "admin", "{actor} deleted user {target} in the admin", True),
    ("admin.bulk_action", "admin", "{actor} ran '{action_name}' on {count} object(s)", False),
    ("admin.audit_cleanup", "audit", "{actor} deleted {deleted} audit entries", True),
    ("admin.audit_export", "audit", "{actor} exported audit entries as {format}", True),
    ("audit.purged", "audit", "Audit entries through #{purged_through_id} purged", False),
    (
        "audit.tamper_detected",
        "security",
        "Audit trail broken at #{first_bad_id}",
        True,
    ),
    ("security.permission_denied", "security", "{actor} was refused {method} {path}", True),
    (
        "security.object_access_denied",
        "security",
        "{actor} asked for another's {target}",
        True,
    ),
    ("security.brute_force_suspected", "security", "Repeated failed logins: {reason}", True),
    (
        "security.account_locked",
        "security",
        "Logins for {attempted_email} locked for {minutes} min after {failures} failures",
        True,
    ),
    ("security.token_misuse", "security", "Invalid token presented: {reason}", True),
]:
    register(_name, _category, _template, security=_security)
