import datetime
import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.models import AdminAction, AuditLog, LegalHold
from invoicegen.core.api import TrueFalseQueryField, datetime_text


class AuditLogSerializer(serializers.ModelSerializer):
    metadata = serializers.DictField(read_only=True)

    class Meta:
        model = AuditLog
        fields = [
            "id", "action", "category", "description", "user", "user_email", "resource_type",
            "resource_id", "ip_address", "user_agent", "method", "path", "metadata", "success",
            "origin", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, entry: AuditLog) -> dict:
        """What the declared fields would write, without DRF's per-field machinery (most of a
        list request's time otherwise: bench/bench_audit_dates.py)."""
        return {
            "id": entry.pk,
            "action": entry.action,
            "category": entry.category,
            "description": entry.description,
            "user": entry.user_id,
            "user_email": entry.user_email,
            "resource_type": entry.resource_type,
            "resource_id": entry.resource_id,
            "ip_address": entry.ip_address,
            "user_agent": entry.user_agent,
            "method": entry.method,
            "path": entry.path,
            "metadata": entry.metadata,
            "success": entry.success,
            "origin": entry.origin,
            "created_at": datetime_text(entry.created_at),
        }


class AdminActionSerializer(serializers.ModelSerializer):
    details = serializers.DictField(read_only=True)

    class Meta:
        model = AdminAction
        fields = [
            "id", "admin", "admin_email", "kind", "action", "target_type", "target_id",
            "target_repr", "details", "ip_address", "request_id", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class CleanupQuerySerializer(serializers.Serializer):
    dry_run = TrueFalseQueryField(default=False)

    def get_fields(self):
        """`days` starts at AUDIT_MIN_RETENTION_DAYS, the floor of the service, read when the
        query is checked or the schema made, so that the schema states it too."""
        return {
            "days": serializers.IntegerField(
                min_value=settings.AUDIT_MIN_RETENTION_DAYS,
                max_value=36500,
                error_messages={
                    "min_value": "Audit entries must be kept at least {min_value} days."
                },
            ),
            **super().get_fields(),
        }


class CleanupResultSerializer(serializers.Serializer):
    deleted = serializers.IntegerField()
    cutoff = serializers.DateTimeField()
    dry_run = serializers.BooleanField()
    held = serializers.IntegerField(help_text="Entries past the cutoff a legal hold kept.")
    unarchived = serializers.IntegerField(
        help_text="Entries past the cutoff kept until their month is archived."
    )
    dropped = serializers.ListField(
        child=serializers.CharField(),
        help_text="Months (YYYY-MM) whose every entry went, by dropping their partition.",
    )


MONTH = "(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])"  # YYYY-MM, of the years a trail has


@extend_schema_field({"type": "string", "pattern": f"^{MONTH}$"})
class MonthField(serializers.CharField):
    """A month as YYYY-MM; its first day."""

    default_error_messages = {"invalid": "A month as YYYY-MM, from 1970 to 2999."}

    def to_internal_value(self, data) -> datetime.date:
        text = super().to_internal_value(data)
        if not re.fullmatch(MONTH, text):
            self.fail("invalid")
        return datetime.date.fromisoformat(f"{text}-01")


class VerifyQuerySerializer(serializers.Serializer):
    since = MonthField(
        required=False,
        allow_blank=True,  # ?since= as if absent, like the other query parameters
        help_text="Check the entries of this month (YYYY-MM) and later only, and the whole "
        "checkpoint chain: a check of the whole trail reads every archived month.",
    )


class VerificationSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_bad_id = serializers.IntegerField(allow_null=True)


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "jsonl"], default="csv")


class LegalHoldSerializer(serializers.ModelSerializer):
    class Meta:
        model = LegalHold
        fields = [
            "id", "reason", "user", "resource_type", "resource_id", "category", "starts_at",
            "ends_at", "placed_by_email", "placed_at", "released_by_email", "released_at",
            "release_reason",
        ]  # fmt: skip
        read_only_fields = fields


class PlaceLegalHoldSerializer(serializers.Serializer):
    """What a hold keeps: the entries that match every criterion given (none: all of them)."""

    reason = serializers.CharField(max_length=2000)
    user_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    resource_type = serializers.CharField(max_length=50, required=False, default="")
    resource_id = serializers.CharField(max_length=64, required=False, default="")
    category = serializers.CharField(max_length=32, required=False, default="")
    starts_at = serializers.DateTimeField(required=False)
    ends_at = serializers.DateTimeField(required=False)


class ReleaseLegalHoldSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


class EraseSubjectSerializer(serializers.Serializer):
    basis = serializers.CharField(
        max_length=2000, help_text="Why the data is erased: the request, or the law it answers."
    )


class ErasureSerializer(serializers.Serializer):
    subject = serializers.IntegerField(help_text="The user whose data was erased.")
    keys = serializers.IntegerField(help_text="Keys destroyed: 0 if none was live.")
    unsealed = serializers.IntegerField(
        help_text="Their entries written before personal data was sealed, which keep it."
    )
    basis = serializers.CharField()
