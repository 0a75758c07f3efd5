from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "invoicegen.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self):
        from django.utils.translation import gettext_lazy as _

        from audit import registry
        from downloads.services import register_resource
        from emails.delivery import register_delivery_problem_handler
        from emails.services import register_link_maker
        from emails.unsubscribe import register_sender_topic
        from invoicegen.billing import events, links, services
        from invoicegen.billing.models import (
            BusinessProfile,
            Invoice,
            InvoiceItem,
            Payment,
            Subscription,
        )
        from notifications.types import EMAIL, IN_APP, register_type
        from webhooks.types import register_event_type

        # How often the client viewed and downloaded it is bookkeeping, with entries of its own
        # (download.viewed, download.succeeded), not an edit of the invoice.
        registry.track(
            Invoice,
            resource_type="invoice",
            label_field="number",
            quiet_fields=("updated_at", "first_viewed_at", "view_count", "download_count"),
        )
        registry.track(InvoiceItem, resource_type="invoice_item", label_field="description")
        registry.track(Payment, resource_type="payment")
        registry.track(Subscription, resource_type="subscription", label_field="plan")
        registry.track(BusinessProfile, resource_type="business_profile", label_field="legal_name")

        by_email = {"channels": (IN_APP, EMAIL), "email_template": "invoice_notification_user"}
        register_type(
            "invoice_finalized",
            label=_("Invoice finalized"),
            title=_("Invoice {invoice_number} finalized"),
            body=_("It is ready to send to your client."),
            **by_email,
        )
        register_type(
            "invoice_sent",
            label=_("Invoice sent"),
            title=_("Invoice {invoice_number} sent"),
            body=_("Sent to {to}."),
            **by_email,
        )
        register_type(
            "invoice_paid",
            label=_("Invoice paid"),
            title=_("Invoice {invoice_number} paid"),
            body=_("{client_name} paid {total} in full."),
            **by_email,
        )
        # In the app only: a client opening an invoice is worth a glance, not an email.
        register_type(
            "invoice_viewed",
            label=_("Invoice viewed"),
            title=_("Invoice {invoice_number} viewed"),
            body=_("{client_name} opened it for the first time."),
        )
        register_type(
            "invoice_downloaded",
            label=_("Invoice downloaded"),
            title=_("Invoice {invoice_number} downloaded"),
            body=_("{client_name} downloaded it for the first time."),
        )
        register_type(
            "invoice_delivery_failed",
            label=_("Invoice delivery failed"),
            title=_("Your invoice {invoice_number} to {to} {problem}: {reason}"),
            body=_("Check the address with your client, then send the invoice again."),
            terms={"problem": {"bounced": _("bounced"), "complained": _("complained")}},
        )
        register_delivery_problem_handler("invoice", events.invoice_delivery_failed)
        subscription_types = {
            "subscription_activated": (
                _("Subscription activated"),
                _("Your {plan} subscription is active"),
            ),
            "subscription_cancelled": (
                _("Subscription cancelled"),
                _("Your {plan} subscription is cancelled"),
            ),
            "subscription_renewed": (
                _("Subscription renewed"),
                _("Your {plan} subscription is renewed"),
            ),
        }
        for name, (label, title) in subscription_types.items():
            register_type(
                name,
                label=label,
                title=title,
                body=_("Current period ends {period_ends}."),
                channels=(IN_APP, EMAIL),
                email_template="subscription_notification",
            )

        register_resource(
            "invoice",
            describe=links.describe_invoice,
            render=links.render_invoice_file,
            on_viewed=services.record_invoice_view,
            on_downloaded=services.record_invoice_download,
        )
        register_link_maker(
            "invoice_notification_client",
            keys=("download_url",),
            make=links.make_client_download_link,
        )
        register_link_maker(
            "invoice_reminder", keys=("download_url",), make=links.make_reminder_download_link
        )
        # A client may stop an issuer's reminders; the invoice itself always reaches them.
        register_sender_topic(events.REMINDERS, label=_("payment reminders"))
        for name, description in events.WEBHOOK_EVENTS.items():
            register_event_type(name, description)
