from django.contrib import admin

from audit.admin import AuditedModelAdmin
from invoicegen.core.admin import ReadOnlyInline
from notifications.models import Notification, NotificationPreference


class NotificationPreferenceInline(ReadOnlyInline):
    """On the user's page: what they chose (every other type and channel has its default)."""

    model = NotificationPreference
    fields = readonly_fields = ["type", "channel", "frequency", "updated_at"]
    verbose_name_plural = "notification preferences they chose (the rest are the defaults)"


@admin.register(Notification)
class NotificationAdmin(AuditedModelAdmin):
    list_display = ["id", "created_at", "user", "type", "title", "read_at", "in_app", "digest"]
    list_filter = [
        "type",
        ("read_at", admin.EmptyFieldListFilter),
        "in_app",
        "digest",
        "created_at",
    ]
    search_fields = ["=user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = [
        "user", "type", "title", "message", "params", "resource_type", "resource_id", "actor",
        "read_at", "in_app", "digest", "created_at",
    ]  # fmt: skip

    def has_add_permission(self, request):
        return False
