from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "invoicegen.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self):
        from downloads.services import register_resource
        from emails.services import register_link_maker
        from invoicegen.billing import links

        register_resource(
            "invoice", describe=links.describe_invoice, render=links.render_invoice_file
        )
        register_link_maker(
            "invoice_notification_client",
            keys=("download_url",),
            make=links.make_client_download_link,
        )
