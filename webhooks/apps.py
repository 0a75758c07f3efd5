from django.apps import AppConfig
from django.core import checks


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from django.utils.translation import gettext_lazy

        from invoicegen.core.outbox import lease_check
        from notifications import types
        from notifications.services import register_sender
        from webhooks import services
        from webhooks.services import DISABLED_NOTIFICATION, NOTIFICATION_EVENT
        from webhooks.types import register_event_type

        checks.register(lease_check("WEBHOOK", _task_time_limit, check_id="webhooks.E001"))
        # The `webhook` channel of notification preferences.
        register_event_type(
            NOTIFICATION_EVENT,
            "A notification of a type the account chose to receive by webhook (the webhook "
            "channel of its notification preferences).",
        )
        register_sender(types.WEBHOOK, services.send_notification)
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
