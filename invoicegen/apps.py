from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin with the project's site as the default one (invoicegen/admin.py)."""

    default_site = "invoicegen.admin.AdminSite"
