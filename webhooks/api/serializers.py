import json

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from invoicegen.core import json_fields
from webhooks import types
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPES_HELP = (
    "The events it receives: names from `GET /api/webhooks/event-types/`, a group of them "
    "(the name up to its first dot, then `.*`), or `*` for all."
)


class EndpointSerializer(serializers.ModelSerializer):
    """`secret_rotation_ends_at`: while a rotated-out secret still signs beside the new one."""

    secret_rotation_ends_at = serializers.SerializerMethodField()
    event_types = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "description", "event_types", "enabled", "disabled_reason",
            "failing_since", "secret_rotation_ends_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_secret_rotation_ends_at(self, endpoint) -> str | None:
        ends = endpoint.previous_secret_expires_at
        if not endpoint.previous_secret or ends is None:
            return None
        return serializers.DateTimeField().to_representation(ends)


class EndpointWithSecretSerializer(EndpointSerializer):
    """The endpoint and its signing secret (`whsec_...`), shown this once: keep it."""

    secret = serializers.CharField(read_only=True)

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class EventTypeField(serializers.ChoiceField):
    """A registered event type, a group of them or `*` (the registry is filled by the apps'
    ready(), before any serializer is made)."""

    def __init__(self, **kwargs):
        super().__init__(choices=types.patterns(), **kwargs)


@extend_schema_field(
    {"type": "string", "format": "uri", "pattern": "^https://[^\\x00]+$", "maxLength": 2000}
)
class EndpointURLField(json_fields.CharField):
    pass


class EndpointInputSerializer(json_fields.ModelSerializer):
    url = EndpointURLField(
        max_length=2000,
        help_text="Where events are POSTed: https (an http URL reaches this machine only, and "
        "only on a development server). Checked again at each send: an address in a private, "
        "loopback or link-local network is refused.",
    )
    event_types = serializers.ListField(
        child=EventTypeField(),
        min_length=1,
        max_length=50,
        help_text=EVENT_TYPES_HELP,
    )
    enabled = json_fields.BooleanField(
        required=False,
        help_text="false stops its deliveries; true sends again to one that was disabled.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_types", "enabled"]


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["attempted_at", "status_code", "response_body", "error", "duration_ms"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """`message_id` is the `webhook-id` header; `payload` the body as sent; `attempt_log` each
    attempt and its answer (the first KB of its body)."""

    payload = serializers.SerializerMethodField()
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_type", "message_id", "status", "attempts", "next_attempt_at",
            "sent_at", "last_error", "replay_of", "created_at", "payload", "attempt_log",
        ]  # fmt: skip
        read_only_fields = fields

    def get_payload(self, delivery) -> dict:
        return json.loads(delivery.payload)


class EventTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()


class RecoverSerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        help_text="From when: the deliveries made since then are sent again."
    )

    def validate_since(self, since):
        if since > timezone.now():
            raise serializers.ValidationError("since is in the future.")
        return since


class RecoveredSerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="Deliveries queued again.")
    more = serializers.BooleanField(help_text="More are left: call again with the same `since`.")
