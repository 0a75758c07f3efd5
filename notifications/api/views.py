from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, throttling, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from invoicegen.core.api import FailOpen
from notifications import preferences, realtime, services
from notifications.api import serializers
from notifications.api.filters import NotificationFilter
from notifications.models import Notification


class NotificationTestThrottle(FailOpen, throttling.UserRateThrottle):
    scope = "notification_test"


class SocketTicketThrottle(FailOpen, throttling.UserRateThrottle):
    scope = "ws_ticket"


@extend_schema_view(
    list=extend_schema(operation_id="listNotifications"),
    retrieve=extend_schema(operation_id="getNotification"),
)
class NotificationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The caller's own notifications, newest first."""

    queryset = Notification.objects.all()
    serializer_class = serializers.NotificationSerializer
    filterset_class = NotificationFilter
    lookup_value_regex = "[0-9]+"  # ASCII digits (\d takes every script's)

    def get_queryset(self):
        notifications = super().get_queryset().filter(user=self.request.user, in_app=True)
        if self.action == "list":  # rows of plain values: an instance per row costs a page more
            return notifications.values_list(*serializers.LIST_COLUMNS, named=True)
        return notifications

    @extend_schema(
        operation_id="countUnreadNotifications", responses=serializers.UnreadCountSerializer
    )
    @action(detail=False, url_path="unread-count")
    def unread_count(self, request):
        return Response({"unread_count": services.unread_count(request.user)})

    @extend_schema(
        operation_id="markNotificationRead",
        request=None,
        responses=serializers.NotificationSerializer,
    )
    @action(detail=True, methods=["put"])
    def read(self, request, pk=None):
        notification = services.mark_read(self.get_object())
        return Response(self.get_serializer(notification).data)

    @extend_schema(
        operation_id="markAllNotificationsRead",
        request=None,
        responses=serializers.MarkedSerializer,
    )
    @action(detail=False, methods=["put"], url_path="mark-all-read")
    def mark_all_read(self, request):
        return Response({"marked": services.mark_all_read(request.user)})

    @extend_schema(
        operation_id="sendTestNotification",
        request=None,
        responses={201: serializers.NotificationSerializer},
    )
    @action(detail=False, methods=["post"], throttle_classes=[NotificationTestThrottle])
    def test(self, request):
        notification = services.send_test_notification(request.user)
        return Response(self.get_serializer(notification).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="createSocketTicket",
        request=None,
        responses={201: serializers.SocketTicketSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="ws-ticket",
        throttle_classes=[SocketTicketThrottle],
    )
    def ws_ticket(self, request):
        """A single-use ticket (valid 60 s) that opens `/ws/notifications/?ticket=...` as the
        caller: for a client without the session cookie (the API token never goes in a URL)."""
        raw, ticket = realtime.issue_ticket(request.user)
        body = {"ticket": raw, "expires_at": ticket.expires_at}
        return Response(serializers.SocketTicketSerializer(body).data, status=201)

    @extend_schema(
        methods=["get"],
        operation_id="getNotificationPreferences",
        request=None,
        responses=serializers.PreferencesSerializer,
    )
    @extend_schema(
        methods=["put"],
        operation_id="setNotificationPreferences",
        request=serializers.PreferencesSerializer,
        responses=serializers.PreferencesSerializer,
    )
    @action(detail=False, methods=["get", "put"], url_path="preferences")
    def preferences(self, request):
        """The caller's notification preferences: how often each type reaches them on each
        channel. Critical types cannot be switched off (400 naming them)."""
        if request.method == "PUT":
            chosen = serializers.PreferencesSerializer(data=request.data)
            chosen.is_valid(raise_exception=True)
            matrix = preferences.set_matrix(request.user, chosen.validated_data["preferences"])
        else:
            matrix = preferences.matrix(request.user)
        return Response({"preferences": matrix, "critical_types": preferences.critical_types()})
