from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "invoicegen.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from emails.services import register_link_maker
        from invoicegen.accounts import services

        register_link_maker(
            "email_verification", keys=("verify_url",), make=services.make_verification_link
        )
        register_link_maker("password_reset", keys=("reset_url",), make=services.make_reset_link)
