from django.urls import re_path

from audit.api.views import (
    AdminActionViewSet,
    AuditLogViewSet,
    LegalHoldViewSet,
    SubjectViewSet,
)

app_name = "audit"


def logs(operation_id: str):
    """The trail's list, on each path that narrows it."""
    return AuditLogViewSet.as_view({"get": "list"}, operation_id=operation_id)


urlpatterns = [
    re_path(r"^logs/?$", logs("listAuditLogs"), name="logs"),
    re_path(
        r"^logs/export/?$",
        AuditLogViewSet.as_view(
            {"get": "export"}, query_parameters=("format",), pagination_class=None
        ),
        name="export",
    ),
    re_path(
        r"^security-events/?$",
        AuditLogViewSet.as_view({"get": "security_events"}),
        name="security-events",
    ),
    re_path(r"^user/(?P<user_id>[0-9]+)/logs/?$", logs("listUserAuditLogs"), name="user-logs"),
    re_path(
        r"^resource/(?P<resource_type>[A-Za-z0-9_.-]{1,50})/(?P<resource_id>[^/\x00]{1,64})/logs/?$",
        logs("listResourceAuditLogs"),
        name="resource-logs",
    ),
    re_path(r"^cleanup/?$", AuditLogViewSet.as_view({"delete": "cleanup"}), name="cleanup"),
    re_path(r"^verify/?$", AuditLogViewSet.as_view({"get": "verify"}), name="verify"),
    re_path(
        r"^admin-actions/?$", AdminActionViewSet.as_view({"get": "list"}), name="admin-actions"
    ),
    re_path(
        r"^holds/?$",
        LegalHoldViewSet.as_view({"get": "list", "post": "create"}),
        name="holds",
    ),
    re_path(
        r"^holds/(?P<pk>[0-9]+)/?$",
        LegalHoldViewSet.as_view({"get": "retrieve"}),
        name="hold",
    ),
    re_path(
        r"^holds/(?P<pk>[0-9]+)/release/?$",
        LegalHoldViewSet.as_view({"post": "release"}),
        name="hold-release",
    ),
    re_path(
        r"^subjects/(?P<user_id>[0-9]+)/erase/?$",
        SubjectViewSet.as_view({"post": "erase"}),
        name="subject-erase",
    ),
]
