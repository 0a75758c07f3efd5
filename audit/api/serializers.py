from rest_framework import serializers

from audit.models import AdminAction, AuditLog


class AuditLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = [
            "id", "action", "category", "description", "user", "user_email", "resource_type",
            "resource_id", "ip_address", "user_agent", "method", "path", "metadata", "success",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class AdminActionSerializer(serializers.ModelSerializer):
    class Meta:
        model = AdminAction
        fields = [
            "id", "admin", "admin_email", "kind", "action", "target_type", "target_id",
            "target_repr", "details", "ip_address", "request_id", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class CleanupQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(min_value=1, max_value=36500)
    dry_run = serializers.BooleanField(default=False)


class CleanupResultSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
    cutoff = serializers.DateTimeField()
    dry_run = serializers.BooleanField()


class VerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_bad_id = serializers.IntegerField(allow_null=True)


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "jsonl"], default="csv")
