from rest_framework import serializers

from emails.models import EmailSuppression


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = EmailSuppression
        fields = ["id", "address", "reason", "source", "description", "created_at"]
        read_only_fields = fields
