from rest_framework import serializers

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


class UnreadCountSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField()


class MarkedSerializer(serializers.Serializer):
    marked = serializers.IntegerField()
