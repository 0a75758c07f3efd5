from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join

from audit.admin import AuditedModelAdmin
from invoicegen.billing import services, timeline
from invoicegen.billing.models import (
    BusinessProfile,
    Invoice,
    InvoiceItem,
    InvoiceReminder,
    Payment,
    Subscription,
)
from invoicegen.core.admin import EstimatedCountPaginator, ReadOnlyInline, ServiceOnlyAdmin
from invoicegen.core.exceptions import ConflictError


class InvoiceItemInline(ReadOnlyInline):
    model = InvoiceItem
    fields = ["position", "description", "quantity", "unit_price", "amount"]
    readonly_fields = fields


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ["amount", "method", "created_at"]
    readonly_fields = fields


TIMELINE_LENGTH = 200  # events on an invoice's page


@admin.register(Invoice)
class InvoiceAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """Invoices change only through their lifecycle (the API, or the void action here)."""

    list_display = [
        "number",
        "user",
        "client_name",
        "status",
        "delivery_status",
        "total",
        "currency",
        "due_date",
        "created_at",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["number", "client_name", "client_email", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    inlines = [InvoiceItemInline, PaymentInline]
    actions = ["void_selected"]
    readonly_fields = [
        "user",
        "number",
        "status",
        "client_name",
        "client_email",
        "client_address",
        "currency",
        "due_date",
        "tax_rate",
        "subtotal",
        "tax_total",
        "total",
        "amount_paid",
        "notes",
        "created_at",
        "updated_at",
        "finalized_at",
        "sent_at",
        "sent_to",
        "paid_at",
        "delivery_status",
        "timeline",
    ]

    def get_queryset(self, request):
        delivery_status = timeline.latest_delivery_status()
        return super().get_queryset(request).annotate(delivery_status=delivery_status)

    @admin.display(description="delivery", ordering="delivery_status")
    def delivery_status(self, invoice):
        return invoice.delivery_status or "—"

    @admin.display(description="timeline")
    def timeline(self, invoice):
        """The invoice's story as its owner's API tells it (timeline.py), to its first
        TIMELINE_LENGTH events."""
        page = timeline.timeline_page(invoice, size=TIMELINE_LENGTH)
        if not page.items:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    formats.localize(timezone.localtime(item["occurred_at"])),
                    item["type"],
                    item["description"],
                    item["ip_address"] or "",
                    item["user_agent"] or "",
                )
                for item in page.items
            ),
        )
        more = (
            format_html("<p>Its first {} events; the API pages through all.</p>", TIMELINE_LENGTH)
            if page.more_after
            else ""
        )
        return format_html(
            '<table class="invoice-timeline"><thead><tr><th>when</th><th>what</th>'
            "<th>details</th><th>IP address</th><th>user agent</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    @admin.action(description="Void selected invoices", permissions=["change"])
    def void_selected(self, request, queryset):
        """Voiding cannot be undone: like Django's delete-selected, a page first lists the
        invoices, those that cannot be voided with the reason, and its confirming POST
        (`post=yes`, the voidable ones' ids) voids them."""
        if request.POST.get("post") != "yes":
            return self._void_confirmation(request, queryset)
        voided = 0
        for invoice in queryset:
            try:
                services.void_invoice(invoice, actor=request.user)
                voided += 1
            except ConflictError as error:
                self.message_user(request, f"{invoice}: {error}", messages.WARNING)
        self.message_user(request, f"Voided {voided} invoice(s).")

    def _void_confirmation(self, request, queryset):
        invoices = [(invoice, services.void_refusal(invoice)) for invoice in queryset]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Void the selected invoices?",
            "voidable": [invoice for invoice, refusal in invoices if refusal is None],
            "refused": [(invoice, refusal) for invoice, refusal in invoices if refusal],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/billing/invoice/void_selected_confirmation.html", context
        )


@admin.register(InvoiceReminder)
class InvoiceReminderAdmin(ServiceOnlyAdmin):
    """The steps of reminder schedules done, as remind_invoice wrote them: sent, skipped (a
    later step fell due first) or suppressed (the invoice's address is on the suppression
    list). Several rows an invoice, so the count is estimated like the trail's."""

    list_display = ["invoice_number", "owner", "step", "outcome", "created_at"]
    list_filter = ["outcome"]
    search_fields = ["invoice__number", "invoice__client_email", "invoice__sent_to"]
    list_select_related = ["invoice__user"]
    ordering = ["-invoice_id", "-days"]  # newest invoices first, along the unique index
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = readonly_fields = ["invoice", "days", "outcome", "created_at"]

    @admin.display(description="Invoice", ordering="invoice__number")
    def invoice_number(self, reminder: InvoiceReminder) -> str:
        return reminder.invoice.number

    @admin.display(description="Owner")
    def owner(self, reminder: InvoiceReminder):
        return reminder.invoice.user

    @admin.display(description="Step (days from due)", ordering="days")
    def step(self, reminder: InvoiceReminder) -> str:
        return f"{reminder.days:+d}"


@admin.register(BusinessProfile)
class BusinessProfileAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """What each user's invoices print of them; users change it through the API."""

    list_display = ["user", "legal_name", "tax_id", "updated_at"]
    search_fields = ["legal_name", "tax_id", "user__email"]
    list_select_related = ["user"]
    fields = readonly_fields = [
        "user", "legal_name", "address", "tax_id", "payment_instructions", "notes", "updated_at",
    ]  # fmt: skip

    def get_queryset(self, request):
        return super().get_queryset(request).defer("logo")  # up to 256 KiB a row, never shown


@admin.register(Subscription)
class SubscriptionAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    list_display = ["user", "plan", "status", "current_period_end"]
    list_filter = ["plan", "status"]
    search_fields = ["user__email"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancelled_at",
        "created_at",
        "updated_at",
    ]
