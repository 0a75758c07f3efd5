from django.contrib import admin, messages
from django.utils.html import escape, format_html

from audit.admin import AuditedModelAdmin
from emails import delivery, services
from emails.models import EmailLog, EmailOptOut, EmailSuppression
from invoicegen.core.admin import ServiceOnlyAdmin


@admin.register(EmailLog)
class EmailLogAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """The outbox, for staff: what was sent, what failed and why; retry or resend."""

    list_display = [
        "id",
        "created_at",
        "to_email",
        "template_name",
        "status",
        "attempts",
        "sent_at",
    ]
    # By kind: its template (digests are `notification_digest`), what it could be unsubscribed
    # from, and what became of it (`unsubscribed`: its client had stopped its sender's topic).
    list_filter = ["status", "template_name", "topic", "delivery_status", "created_at"]
    search_fields = ["=to_email", "=message_id", "subject"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    actions = ["retry_selected", "resend_selected"]
    fields = [
        "status", "to_email", "from_email", "subject", "template_name", "topic", "message_id",
        "attempts", "next_attempt_at", "claimed_at", "last_error", "sent_at", "delivery_status",
        "created_at",
        "user", "notification", "resource_type", "resource_id", "rendered_text",
        "rendered_html",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="plain text")
    def rendered_text(self, email):
        return format_html("<pre>{}</pre>", services.render(email, with_secrets=False).body)

    @admin.display(description="HTML")
    def rendered_html(self, email):
        html = services.render(email, with_secrets=False).alternatives[0][0]
        # In a sandboxed frame: the email's HTML never runs in the admin's origin. escape(),
        # not format_html's own escaping, which passes a template's output (marked safe) as it
        # is: its first quote would end the attribute and leave the frame blank.
        return format_html(
            '<iframe sandbox srcdoc="{}" '
            'style="width:640px;max-width:100%;height:480px;border:1px solid #ccc"></iframe>',
            escape(html),
        )

    @admin.action(description="Retry selected failed emails", permissions=["change"])
    def retry_selected(self, request, queryset):
        retried = sum(services.retry_email(email) for email in queryset)
        self.message_user(request, f"{retried} failed email(s) queued again.", messages.SUCCESS)

    @admin.action(description="Resend selected emails (a new copy)", permissions=["change"])
    def resend_selected(self, request, queryset):
        copies = [services.resend_email(email) for email in queryset]
        self.message_user(request, f"{len(copies)} email(s) queued again.", messages.SUCCESS)


class AddressSearch:
    """Addresses are stored lower-cased: Ada@Example.com finds ada@example.com."""

    def get_search_results(self, request, queryset, search_term):
        term = delivery.normalize_address(search_term)
        return super().get_search_results(request, queryset, term)


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(AddressSearch, AuditedModelAdmin, ServiceOnlyAdmin):
    """Addresses no email goes to (a hard bounce, a complaint, an unsubscribe); staff remove
    one through the service, which audits it."""

    list_display = ["address", "reason", "source", "description", "created_at"]
    list_filter = ["reason", "source"]
    search_fields = ["=address"]
    list_per_page = 50
    show_full_result_count = False
    actions = ["remove_selected"]
    fields = list_display
    readonly_fields = fields

    @admin.action(description="Remove selected addresses from the list", permissions=["change"])
    def remove_selected(self, request, queryset):
        removed = [delivery.remove_suppression(row, actor=request.user) for row in queryset]
        self.message_user(request, f"{len(removed)} address(es) removed.", messages.SUCCESS)


@admin.register(EmailOptOut)
class EmailOptOutAdmin(AddressSearch, AuditedModelAdmin, ServiceOnlyAdmin):
    """Addresses that unsubscribed from one account's emails of a topic (its reminders),
    by the link in one of them; the account's other emails still reach them."""

    list_display = ["address", "topic", "sender", "created_at"]
    list_filter = ["topic"]
    search_fields = ["=address"]
    list_select_related = ["sender"]
    list_per_page = 50
    show_full_result_count = False
    fields = list_display
    readonly_fields = fields
