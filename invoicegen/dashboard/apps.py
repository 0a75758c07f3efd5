from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "invoicegen.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
