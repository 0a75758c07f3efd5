from django.contrib import admin

from audit.admin import AuditedModelAdmin
from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(AuditedModelAdmin):
    list_display = ["id", "created_at", "user", "type", "title", "read_at"]
    list_filter = ["type", ("read_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["=user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = [
        "user", "type", "title", "message", "params", "resource_type", "resource_id", "actor",
        "read_at", "created_at",
    ]  # fmt: skip

    def has_add_permission(self, request):
        return False
