from rest_framework import serializers

from invoicegen.core.api import datetime_text
from notifications import types
from notifications.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    """Title and message rendered from the type and its parameters (`metadata`)."""

    title = serializers.CharField(read_only=True)
    message = serializers.CharField(read_only=True)
    metadata = serializers.JSONField(source="params", read_only=True)
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id", "type", "title", "message", "resource_type", "resource_id", "metadata",
            "is_read", "read_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, notification: Notification) -> dict:
        """What the declared fields would write, rendering the text once and without DRF's
        per-field machinery (most of a list request's time otherwise: bench/). `notification`
        is a Notification or, in a list, a row of LIST_COLUMNS."""
        title, message = types.render(notification.type, notification.params)
        return {
            "id": notification.id,
            "type": notification.type,
            "title": title,
            "message": message,
            "resource_type": notification.resource_type,
            "resource_id": notification.resource_id,
            "metadata": notification.params,
            "is_read": notification.read_at is not None,
            "read_at": datetime_text(notification.read_at),
            "created_at": datetime_text(notification.created_at),
        }


# What a list reads of each notification, as plain values.
LIST_COLUMNS = ["id", "type", "params", "resource_type", "resource_id", "read_at", "created_at"]


class UnreadCountSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()


class MarkedSerializer(serializers.Serializer):
    marked = serializers.IntegerField()
