from django.contrib import admin, messages

from audit.admin import AuditedModelAdmin
from invoicegen.core.admin import ReadOnlyInline, ServiceOnlyAdmin
from invoicegen.core.exceptions import ConflictError
from webhooks import services
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """Users' endpoints, for staff: which are failing or disabled, and why. Secrets never
    show; their owners manage endpoints through the API."""

    list_display = ["id", "user", "url", "enabled", "failing_since", "created_at"]
    list_filter = ["enabled", ("failing_since", admin.EmptyFieldListFilter)]
    search_fields = ["=user__email", "url"]
    list_select_related = ["user"]
    list_per_page = 50
    show_full_result_count = False
    fields = [
        "user", "url", "description", "event_types", "enabled", "disabled_reason",
        "failing_since", "previous_secret_expires_at", "created_at", "updated_at",
    ]  # fmt: skip
    readonly_fields = fields


class AttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = readonly_fields = [
        "attempted_at", "status_code", "error", "duration_ms", "response_body",
    ]  # fmt: skip


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """Every delivery and its attempts; replay the ones staff select."""

    list_display = ["id", "created_at", "endpoint", "event_type", "status", "attempts", "sent_at"]
    list_filter = ["status", "created_at"]  # (event types: a DISTINCT over every delivery)
    search_fields = ["=message_id", "=endpoint__user__email"]
    list_select_related = ["endpoint"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    actions = ["replay_selected"]
    inlines = [AttemptInline]
    fields = [
        "endpoint", "event_type", "message_id", "status", "attempts", "next_attempt_at",
        "claimed_at", "sent_at", "last_error", "replay_of", "created_at", "payload",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.action(description="Replay selected deliveries", permissions=["change"])
    def replay_selected(self, request, queryset):
        replayed, refused = 0, 0
        for delivery in queryset.select_related("endpoint"):
            try:
                services.replay_delivery(delivery, actor=request.user)
                replayed += 1
            except ConflictError:
                refused += 1
        self.message_user(request, f"{replayed} delivery(ies) queued again.", messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                f"{refused} not replayed: their endpoint is disabled.",
                messages.WARNING,
            )
