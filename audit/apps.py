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
