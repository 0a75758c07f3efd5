from django.apps import AppConfig
from django.core import checks


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from django.utils.translation import gettext_lazy

        from invoicegen.core.outbox import lease_check
        from notifications import types
        from webhooks.services import DISABLED_NOTIFICATION

        checks.register(lease_check("WEBHOOK", _task_time_limit, check_id="webhooks.E001"))
        types.register_type(
            DISABLED_NOTIFICATION,
            label=gettext_lazy("Webhook endpoints disabled"),
            title=gettext_lazy("Webhook endpoint disabled"),
            body=gettext_lazy("No more events are sent to {url}: {reason}"),
            channels=(types.IN_APP, types.EMAIL),
        )


def _task_time_limit() -> int:
    from webhooks.tasks import TIME_LIMIT

    return TIME_LIMIT
