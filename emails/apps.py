from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class EmailsConfig(AppConfig):
    name = "emails"
    verbose_name = "Emails"

    def ready(self):
        from anymail.signals import tracking

        from emails.webhooks import receive_tracking_event

        checks.register(check_lease_outlasts_delivery)
        checks.register(check_links_are_https, deploy=True)
        tracking.connect(receive_tracking_event, dispatch_uid="emails.delivery_events")


def check_lease_outlasts_delivery(app_configs, **kwargs):
    """A lease shorter than a delivery may take lets a second worker send the row again."""
    from emails.tasks import TIME_LIMIT

    if settings.EMAIL_SENDING_LEASE_SECONDS > TIME_LIMIT:
        return []
    return [
        checks.Error(
            f"EMAIL_SENDING_LEASE_SECONDS ({settings.EMAIL_SENDING_LEASE_SECONDS}) must exceed "
            f"the delivery task's time limit ({TIME_LIMIT} s, EMAIL_SEND_TIMEOUT + "
            "EMAIL_SEND_BATCH_SECONDS + 10).",
            hint="Raise EMAIL_SENDING_LEASE_SECONDS or lower EMAIL_SEND_TIMEOUT.",
            id="emails.E001",
        )
    ]


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
