from decimal import Decimal

from django.conf import settings
from rest_framework import serializers

from downloads.models import SecureDownloadToken
from invoicegen.billing.currencies import ISO_4217_CODES
from invoicegen.billing.models import Invoice, InvoiceItem, Payment, Subscription

MAX_ITEMS = 200


class InvoiceItemSerializer(serializers.ModelSerializer):
    quantity = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.01"))
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))

    class Meta:
        model = InvoiceItem
        fields = ["description", "quantity", "unit_price", "amount"]
        read_only_fields = ["amount"]


class InvoiceSerializer(serializers.ModelSerializer):
    items = InvoiceItemSerializer(many=True, read_only=True)
    balance_due = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "client_name",
            "client_email",
            "currency",
            "due_date",
            "items",
            "total",
            "amount_paid",
            "balance_due",
            "created_at",
            "updated_at",
            "finalized_at",
            "sent_at",
            "paid_at",
        ]
        read_only_fields = fields


class InvoiceInputSerializer(serializers.ModelSerializer):
    """The fields a client writes on create (all but currency required) and on PATCH of a draft."""

    items = InvoiceItemSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)
    currency = serializers.CharField(max_length=3, default="USD")

    class Meta:
        model = Invoice
        fields = ["client_name", "client_email", "currency", "due_date", "items"]

    def validate_currency(self, value):
        code = value.upper()
        if code not in ISO_4217_CODES:
            raise serializers.ValidationError(f"'{value}' is not an ISO 4217 currency code.")
        return code


class SendInvoiceSerializer(serializers.Serializer):
    to = serializers.EmailField(required=False)


class PaymentSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Payment
        fields = ["id", "amount", "method", "created_at"]
        read_only_fields = ["id", "created_at"]


class SubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Subscription
        fields = ["plan", "status", "current_period_start", "current_period_end", "cancelled_at"]
        read_only_fields = fields


class ActivateSubscriptionSerializer(serializers.Serializer):
    plan = serializers.ChoiceField(choices=Subscription.Plan.choices)


class DownloadLinkInputSerializer(serializers.Serializer):
    expires_in_hours = serializers.IntegerField(
        min_value=1, max_value=168, default=lambda: settings.DOWNLOAD_TOKEN_TTL_HOURS
    )
    max_downloads = serializers.IntegerField(
        min_value=1, max_value=100, default=lambda: settings.DOWNLOAD_TOKEN_MAX_DOWNLOADS
    )


class DownloadLinkSerializer(serializers.ModelSerializer):
    """A link as its owner sees it later: never the raw token."""

    class Meta:
        model = SecureDownloadToken
        fields = [
            "id", "expires_at", "max_downloads", "download_count", "revoked_at", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class NewDownloadLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()
    max_downloads = serializers.IntegerField()
