from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Emails"

    def ready(self):
        from anymail.signals import tracking

        from emails.webhooks import receive_tracking_event
        from invoicegen.core.outbox import lease_check

        checks.register(lease_check("EMAIL", _task_time_limit, check_id="emails.E001"))
        checks.register(check_links_are_https, deploy=True)
        tracking.connect(receive_tracking_event, dispatch_uid="emails.delivery_events")


def check_links_are_https(app_configs, **kwargs):
    """Mail providers act on a one-click unsubscribe URL only over https (RFC 8058), and the
    emails' other links carry secrets."""
    if settings.APP_BASE_URL.startswith("https://"):
        return []
    return [
        checks.Warning(
            f"APP_BASE_URL ({settings.APP_BASE_URL}) is not https: the links in emails "
            "(one-click unsubscribe, verification, downloads) would go in the clear.",
            hint="Set APP_BASE_URL to the https:// address of the site (or its SPA).",
            id="emails.W001",
        )
    ]


def _task_time_limit() -> int:
    from emails.tasks import TIME_LIMIT

    return TIME_LIMIT
