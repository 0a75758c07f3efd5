from django.utils import translation
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from invoicegen.core.api import datetime_text
from notifications import preferences, types
from notifications.models import Notification


class NotificationSerializer(serializers.ModelSerializer):
    """Title and message rendered from the type and its parameters (`metadata`), in the
    reader's language as it is now."""

    title = serializers.CharField(read_only=True)
    message = serializers.CharField(read_only=True)
    metadata = serializers.DictField(source="params", read_only=True)
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id", "type", "title", "message", "resource_type", "resource_id", "metadata",
            "is_read", "read_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_fields(self):
        """`type` among the types the apps registered in their ready(), which may run after
        this module is imported."""
        fields = super().get_fields()
        fields["type"] = serializers.ChoiceField(types.choices(), read_only=True)
        return fields

    def to_representation(self, notification: Notification) -> dict:
        """What the declared fields would write, rendering the text once and without DRF's
        per-field machinery (most of a list request's time otherwise: bench/). `notification`
        is a Notification or, in a list, a row of LIST_COLUMNS."""
        reader = self.context.get("reader") or getattr(self.context.get("request"), "user", None)
        with translation.override(getattr(reader, "language", None)):
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


class SocketTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(
        help_text="Opens one connection to `/ws/notifications/?ticket=...`, once, within "
        "`expires_at`."
    )
    expires_at = serializers.DateTimeField()


class MatrixField(serializers.DictField):
    """type -> channel -> frequency."""

    def __init__(self, **kwargs):
        child = serializers.DictField(child=serializers.ChoiceField(types.FREQUENCIES))
        super().__init__(child=child, **kwargs)


class MatrixFieldExtension(OpenApiSerializerFieldExtension):
    """The matrix as the registered types make it: each type and channel named, with the
    frequencies it may take (a critical type's own channels: immediate only, and its webhook
    off only; digests: email only). An answer gives all of it; a PUT any part."""

    target_class = MatrixField

    def map_serializer_field(self, auto_schema, direction):
        def obj(properties: dict) -> dict:
            required = {"required": list(properties)} if direction == "response" else {}
            return {"type": "object", "properties": properties, **required,
                    "additionalProperties": False}  # fmt: skip

        def row(kind) -> dict:
            return obj(
                {
                    channel: {"type": "string", "enum": list(preferences.allowed(kind, channel))}
                    for channel in types.CHANNELS
                }
            )

        matrix = obj({kind.name: row(kind) for kind in types.registered()})
        matrix["description"] = (
            "type -> channel (`in_app`: the feed; `realtime`: the live push to open pages; "
            "`email`; `webhook`: a `notification.created` event to the account's webhook "
            "endpoints) -> `immediate`, `daily`, `weekly` (a digest: emails only) or `off`."
        )
        return matrix


class PreferencesSerializer(serializers.Serializer):
    """Every notification type -> channel -> frequency. A PUT may give part of the matrix: what
    it leaves out goes back to its default."""

    preferences = MatrixField()
    critical_types = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Types that always reach the user at once on the channels they are sent on.",
    )

    def validate_preferences(self, wanted: dict) -> dict:
        known = {kind.name for kind in types.registered()}
        wrong = {
            name: [f"Unknown notification type; known: {', '.join(sorted(known))}."]
            for name in wanted
            if name not in known
        }
        for name, row in wanted.items():
            if unknown := sorted(set(row) - set(types.CHANNELS)):
                wrong.setdefault(name, []).append(
                    f"Unknown channel {', '.join(unknown)}; known: {', '.join(types.CHANNELS)}."
                )
        if not wrong:
            wrong = preferences.refusals(wanted)
        if wrong:
            raise serializers.ValidationError(wrong)
        return wanted
