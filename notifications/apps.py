from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from django.utils.translation import gettext_lazy

        from emails.unsubscribe import register_account_topics
        from notifications import preferences, types

        register_account_topics(label=preferences.topic_label, stop=preferences.stop_emails)

        # Staff's messages (the admin's action, the test notification): their text is given,
        # and so are their channels (notify's `channels`).
        types.register_type(
            "admin_message",
            label=gettext_lazy("Messages from the team"),
            title="{title}",
            body="{message}",
            channels=(types.IN_APP, types.EMAIL),
        )
