from django.contrib import admin, messages
from django.utils import timezone

from audit.admin import AuditedModelAdmin
from downloads import services
from downloads.models import DownloadEvent, SecureDownloadToken
from invoicegen.core.admin import ReadOnlyInline, ServiceOnlyAdmin


class DownloadEventInline(ReadOnlyInline):
    model = DownloadEvent
    fields = ["created_at", "kind", "granted", "reason", "ip_address", "user_agent"]
    readonly_fields = fields
    ordering = ["-id"]


@admin.register(SecureDownloadToken)
class SecureDownloadTokenAdmin(AuditedModelAdmin, ServiceOnlyAdmin):
    """Links are listed by a prefix of their hash: no raw token exists to show."""

    list_display = [
        "id", "hash_prefix", "resource", "status", "download_count", "max_downloads",
        "expires_at", "email", "created_by",
    ]  # fmt: skip
    list_filter = ["resource_type", "expires_at", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["=resource_id", "=created_by__email", "=email__to_email"]
    list_select_related = ["email", "created_by"]
    inlines = [DownloadEventInline]
    actions = ["revoke_selected"]
    fields = [
        "hash_prefix", "resource_type", "resource_id", "status", "download_count",
        "max_downloads", "expires_at", "revoked_at", "email", "created_by", "created_at",
    ]  # fmt: skip
    readonly_fields = fields

    @admin.display(description="token (hash prefix)")
    def hash_prefix(self, token):
        return f"{token.token_hash[:12]}…"

    @admin.display(description="resource")
    def resource(self, token):
        return f"{token.resource_type} {token.resource_id}"

    @admin.display(description="status")
    def status(self, token):
        if token.revoked_at:
            return "revoked"
        if token.expires_at <= timezone.now():
            return "expired"
        return "used up" if token.downloads_left <= 0 else "active"

    @admin.action(description="Revoke selected links", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = [services.revoke_token(token) for token in queryset.filter(revoked_at=None)]
        self.message_user(request, f"Revoked {len(revoked)} link(s).", messages.SUCCESS)
