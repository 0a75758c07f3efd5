from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "invoicegen.billing"
    label = "billing"
    verbose_name = "Billing"
