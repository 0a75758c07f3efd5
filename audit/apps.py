from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from audit import receivers

        receivers.connect_model_receivers()
        receivers.connect_connection_receivers()
        receivers.connect_auth_receivers()
        receivers.connect_task_receivers()
        checks.register(check_tracked_models_capture_bulk_writes)
        checks.register(check_owner_role_is_not_the_app_role, checks.Tags.security, deploy=True)


def check_owner_role_is_not_the_app_role(app_configs, **kwargs):
    """One role that both owns the audit tables and runs the application can rewrite them."""
    from django.conf import settings
    from django.db import connection

    app_role = connection.settings_dict["USER"]
    if connection.vendor != "postgresql" or settings.DATABASE_OWNER.get("USER") != app_role:
        return []
    return [
        checks.Warning(
            f"The application connects as {app_role!r}, the role that owns the audit tables: "
            "it can drop their triggers and rewrite the trail.",
            hint="Set DATABASE_OWNER_URL to an owner role for migrations and DATABASE_URL to a "
            "role of its own (README: production).",
            id="audit.W001",
        )
    ]


def check_tracked_models_capture_bulk_writes(app_configs, **kwargs):
    """A tracked model whose manager is not audited would let update()/bulk_*() slip past."""
    from audit.tracking import AuditedQuerySet, tracked_models

    return [
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
