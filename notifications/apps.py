from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from notifications import types

        # Staff's messages (the admin's action, the test notification): their text is given,
        # and so are their channels (notify's `channels`).
        types.register_type(
            "admin_message",
            title="{title}",
            body="{message}",
            channels=(types.IN_APP, types.EMAIL),
        )
