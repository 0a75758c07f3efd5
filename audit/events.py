"""The backbone's own actions: authentication as Django's auth signals report it, security
refusals, the trail's own upkeep, downloads, notifications and emails. The domain apps register
theirs in their `ready()` (see audit/registry.py)."""

from audit.registry import register_action

BACKBONE_ACTIONS = [
    # (name, category, template, security)
    ("user.login", "auth", "{actor} logged in", False),
    ("user.login_failed", "auth", "Failed login for {attempted_email}", True),
    ("user.login_locked", "auth", "Login for {attempted_email} refused: locked out", True),
    ("user.logout", "auth", "{actor} logged out", False),
    ("download.link_created", "download", "{actor} created a download link", False),
    ("download.succeeded", "download", "{target} downloaded through a link", False),
    ("download.viewed", "download", "{target} viewed through a link", False),
    ("download.denied", "download", "Download refused: {reason}", True),
    ("download.link_revoked", "download", "{actor} revoked a download link", False),
    ("notification.test", "notification", "{actor} sent a test notification", False),
    ("notification.preferences_updated", "notification", "{actor} changed notifications", False),
    ("admin.notification_broadcast", "admin", "{actor} messaged {count} user(s)", False),
    ("email.failed", "email", "Email to {to} failed: {reason}", False),
    ("admin.email_resent", "admin", "{actor} resent {target}", False),
    ("admin.email_retried", "admin", "{actor} retried {target}", False),
    ("email.address_suppressed", "email", "{address} suppressed: {reason} ({source})", False),
    ("email.unsubscribed", "email", "{address} unsubscribed from {topic}", False),
    ("email.suppression_removed", "email", "{actor} let emails go to {address} again", False),
    ("email.webhook_refused", "security", "Email webhook from {provider} refused: {reason}", True),
    ("webhook_endpoint.created", "webhook", "{actor} added the webhook endpoint {url}", False),
    ("webhook_endpoint.updated", "webhook", "{actor} changed the webhook endpoint {url}", False),
    ("webhook_endpoint.deleted", "webhook", "{actor} removed the webhook endpoint {url}", False),
    (
        "webhook_endpoint.secret_rotated",
        "webhook",
        "{actor} rotated the secret of the webhook endpoint {url}",
        True,
    ),
    ("webhook_endpoint.disabled", "webhook", "Webhook endpoint {url} disabled: {reason}", False),
    ("webhook_delivery.replayed", "webhook", "{actor} replayed {event_type} ({target})", False),
    (
        "webhook_endpoint.recovered",
        "webhook",
        "{actor} sent {count} failed deliveries to {url} again",
        False,
    ),
    ("admin.bulk_action", "admin", "{actor} ran '{action_name}' on {count} object(s)", False),
    ("admin.audit_cleanup", "audit", "{actor} deleted {deleted} audit entries", True),
    ("admin.audit_export", "audit", "{actor} exported audit entries as {format}", True),
    ("audit.purged", "audit", "{deleted} audit entries of {month} removed", False),
    ("audit.hold_placed", "audit", "{actor} placed legal hold #{hold}: {reason}", True),
    ("audit.hold_released", "audit", "{actor} released legal hold #{hold}: {reason}", True),
    ("audit.purge_held", "audit", "Legal holds kept {kept} audit entries past retention", False),
    ("audit.archived", "audit", "Audit entries of {month} archived ({rows} entries)", False),
    ("audit.subject_erased", "audit", "{actor} erased the personal data of {target}", True),
    ("audit.verified", "audit", "Audit trail verified: {checked} entries", False),
    ("audit.tamper_detected", "security", "Audit trail broken at #{first_bad_id}", True),
    ("security.permission_denied", "security", "{actor} was refused {method} {path}", True),
    ("security.object_access_denied", "security", "{actor} asked for another's {target}", True),
    ("security.brute_force_suspected", "security", "Repeated failed logins: {reason}", True),
    (
        "security.account_locked",
        "security",
        "Logins for {attempted_email} locked for {minutes} min after {failures} failures",
        True,
    ),
    ("security.token_misuse", "security", "Invalid token presented: {reason}", True),
]


def register_backbone_actions() -> None:
    for name, category, template, security in BACKBONE_ACTIONS:
        register_action(name, category, template, security=security)
