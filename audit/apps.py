import os

from django.apps import AppConfig
from django.core import checks
from django.db.models.indexes import IndexExpression


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from audit import receivers
        from audit.events import register_backbone_actions
        from audit.models import PatternOps

        if not issubclass(PatternOps, IndexExpression.wrapper_classes):
            IndexExpression.register_wrappers(*IndexExpression.wrapper_classes, PatternOps)

        register_backbone_actions()
        receivers.connect_connection_receivers()
        receivers.connect_auth_receivers()
        receivers.connect_task_receivers()
        checks.register(check_tracked_models_capture_bulk_writes)
        checks.register(check_retention_by_category)
        checks.register(check_archive_signing_key_is_set, checks.Tags.security, deploy=True)
        checks.register(check_actions_in_the_trail_are_registered, checks.Tags.database)
        checks.register(
            check_app_role_cannot_rewrite_the_trail,
            checks.Tags.database,
            checks.Tags.security,
            deploy=True,
        )


def check_app_role_cannot_rewrite_the_trail(app_configs, databases=None, **kwargs):
    """A role that owns the audit tables, or may delete their rows, can drop their triggers or
    purge the trail: the application must run as one that cannot (audit/roles.py). It asks the
    database itself, so it runs with `check --deploy --database default`."""
    from django.db import connections

    if not databases or "default" not in databases:
        return []
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper OR t.tableowner = current_user"
            " OR has_table_privilege(t.schemaname || '.' || t.tablename, 'DELETE')"
            " FROM pg_tables t JOIN pg_roles r ON r.rolname = current_user"
            " WHERE t.tablename = 'audit_auditlog' AND t.schemaname = current_schema()"
        )
        row = cursor.fetchone()
    if not row or not row[0]:
        return []
    return [
        checks.Warning(
            f"The application connects as {connection.settings_dict['USER']!r}, a superuser or a "
            "role that owns the audit tables or may remove their rows: it can rewrite the trail.",
            hint="Run migrations as an owner role (DATABASE_OWNER_URL) and the application as a "
            "role of its own (README: production; for an existing database, REASSIGN OWNED).",
            id="audit.W001",
        )
    ]


def check_archive_signing_key_is_set(app_configs, **kwargs):
    """The key that signs the archive's manifests must be its own, kept apart from the
    database and the application's other secrets: derived from SECRET_KEY, anyone who reads the
    settings can sign a forged month."""
    if os.environ.get("AUDIT_ARCHIVE_SIGNING_KEY"):
        return []
    return [
        checks.Warning(
            "AUDIT_ARCHIVE_SIGNING_KEY is not set: the archive's manifests are signed with a "
            "key derived from SECRET_KEY.",
            hint="`manage.py audit_archive_key --new` makes one; set it before the first "
            "month is archived (the archive verifies with one public key).",
            id="audit.W003",
        )
    ]


def check_retention_by_category(app_configs, **kwargs):
    """Each category named in AUDIT_RETENTION_DAYS_BY_CATEGORY is one of the trail's, and is
    kept at least AUDIT_MIN_RETENTION_DAYS."""
    from django.conf import settings

    from audit.registry import categories

    minimum = settings.AUDIT_MIN_RETENTION_DAYS
    errors = []
    for category, days in settings.AUDIT_RETENTION_DAYS_BY_CATEGORY.items():
        if category not in categories():
            errors.append(
                checks.Error(
                    f"AUDIT_RETENTION_DAYS_BY_CATEGORY names {category!r}, not a category of "
                    "the trail.",
                    hint=f"The categories: {', '.join(categories())}.",
                    id="audit.E003",
                )
            )
        elif days < minimum:
            errors.append(
                checks.Error(
                    f"AUDIT_RETENTION_DAYS_BY_CATEGORY keeps {category} {days} days, fewer than "
                    f"AUDIT_MIN_RETENTION_DAYS ({minimum}).",
                    id="audit.E004",
                )
            )
    return errors


def check_tracked_models_capture_bulk_writes(app_configs, **kwargs):
    """A tracked model must be `Audited` (its loaded values are the old values of a diff), and
    a manager that is not audited would let update()/bulk_*() slip past."""
    from audit.registry import tracked_models
    from audit.tracking import Audited, AuditedQuerySet

    not_audited = [
        checks.Error(
            f"{model._meta.label} is tracked but is not an Audited model: its changes would "
            "have no old values.",
            hint="Make it a subclass of audit.tracking.Audited.",
            obj=model,
            id="audit.E002",
        )
        for model in tracked_models()
        if not issubclass(model, Audited)
    ]
    return not_audited + [
        checks.Error(
            f"{model._meta.label} is audited but its default manager does not use "
            "AuditedQuerySet, so its bulk writes would not be captured.",
            hint="objects = AuditedQuerySet.as_manager() (or Manager.from_queryset).",
            obj=model,
            id="audit.E001",
        )
        for model in tracked_models()
        if not isinstance(model._default_manager.get_queryset(), AuditedQuerySet)
    ]


def check_actions_in_the_trail_are_registered(app_configs, databases=None, **kwargs):
    """Names recorded but registered nowhere (a production process records an unknown name
    rather than lose the entry; DEBUG and tests raise). Distinct names are read through the
    action index on PostgreSQL, one probe each, so this stays fast on a trail of millions of
    rows."""
    from django.db import connections

    from audit import registry
    from audit.models import AuditLog

    if not databases or "default" not in databases:
        return []
    table = AuditLog._meta.db_table
    connection = connections["default"]
    if table not in connection.introspection.table_names():  # `migrate` checks before it runs
        return []
    if connection.vendor == "postgresql":  # a loose index scan: one probe per distinct name
        sql = f"""WITH RECURSIVE names(action) AS (
            (SELECT action FROM {table} ORDER BY action LIMIT 1)
            UNION ALL
            SELECT (SELECT action FROM {table} WHERE action > names.action
                    ORDER BY action LIMIT 1)
            FROM names WHERE names.action IS NOT NULL
        ) SELECT action FROM names WHERE action IS NOT NULL"""  # noqa: S608 (a table name)
    else:
        sql = f"SELECT DISTINCT action FROM {table}"  # noqa: S608 (a table name)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        names = sorted(row[0] for row in cursor.fetchall())
    unknown = [
        name
        for name in names
        if not registry.is_registered(name) and not registry.is_former_admin_name(name)
    ]
    if not unknown:
        return []
    return [
        checks.Warning(
            f"The audit trail holds actions no app registers: {', '.join(unknown)}.",
            hint="Register them in the ready() of the app that records them (audit/registry.py).",
            id="audit.W002",
        )
    ]
