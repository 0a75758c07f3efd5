from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "invoicegen.accounts"
    label = "accounts"
    verbose_name = "Accounts"
