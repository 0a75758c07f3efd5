from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "invoicegen.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from django.utils.translation import gettext_lazy as _

        from audit import registry
        from emails.services import register_link_maker
        from invoicegen.accounts import events, services  # noqa: F401 (events registers)
        from invoicegen.accounts.models import User
        from invoicegen.core.i18n import report_untranslated
        from notifications.types import register_type

        # Any change to an account (in the admin, most often) is a security event.
        registry.register_action("user.created", "account", "{actor} created user {target}")
        registry.register_action(
            "user.updated", "account", "{actor} changed user {target}", security=True
        )
        registry.register_action(
            "user.deleted", "account", "{actor} deleted user {target}", security=True
        )
        registry.track(
            User, resource_type="user", label_field="email", quiet_fields=("last_login",)
        )

        register_type(
            "password_reset_requested",
            label=_("Password reset requested"),
            title=_("Password reset requested"),
            body=_("A link to choose a new password was emailed to you. Not you? Ignore it."),
            critical=True,
        )
        # The account's own safety: no preference switches these off.
        register_type(
            "email_verification",
            label=_("Email verification"),
            title=_("Verify your email"),
            body="{message}",
            critical=True,
        )
        register_type(
            "account_activity",
            label=_("Account activity"),
            title="{title}",
            body="{message}",
            critical=True,
        )

        report_untranslated()  # what users and their clients read speaks their language
        register_link_maker(
            "email_verification", keys=("verify_url",), make=services.make_verification_link
        )
        register_link_maker("password_reset", keys=("reset_url",), make=services.make_reset_link)
