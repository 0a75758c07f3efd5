import base64
import binascii
import re
from decimal import Decimal
from io import BytesIO

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from PIL import Image, UnidentifiedImageError
from rest_framework import serializers

from downloads.models import SecureDownloadToken
from invoicegen.billing import timeline
from invoicegen.billing.currencies import ISO_4217_CODES
from invoicegen.billing.models import (
    EARLIEST_REMINDER_DAY,
    LATEST_REMINDER_DAY,
    MAX_REMINDER_STEPS,
    BusinessProfile,
    Invoice,
    InvoiceItem,
    Payment,
    Subscription,
)
from invoicegen.core import json_fields
from invoicegen.core.api import datetime_text, decimal_text

MAX_ITEMS = 200
ISSUED_CURRENCIES = sorted(ISO_4217_CODES)  # as an invoice keeps its code: upper case
CURRENCY_CODES = [*ISSUED_CURRENCIES, *(code.lower() for code in ISSUED_CURRENCIES)]


class InvoiceItemSerializer(json_fields.ModelSerializer):
    quantity = json_fields.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.01"))
    unit_price = json_fields.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))

    class Meta:
        model = InvoiceItem
        fields = ["description", "quantity", "unit_price", "amount"]
        read_only_fields = ["amount"]


class InvoiceListSerializer(serializers.ListSerializer):
    """A page of invoices, each a row of LIST_COLUMNS, and their lines read in one query."""

    def to_representation(self, invoices) -> list[dict]:
        lines = invoice_lines([invoice.id for invoice in invoices])
        return [self.child.represent(invoice, lines[invoice.id]) for invoice in invoices]


class InvoiceSerializer(serializers.ModelSerializer):
    items = InvoiceItemSerializer(many=True, read_only=True)
    currency = serializers.ChoiceField(ISSUED_CURRENCIES, read_only=True)
    balance_due = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)
    delivery_status = serializers.ChoiceField(
        timeline.DELIVERY_STATES,
        allow_null=True,
        read_only=True,
        help_text="What became of the latest email about the invoice to its client: its "
        "provider's last event (delivered, bounced, ...), else queued, sent or failed; null "
        "before any was sent.",
    )

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "client_name",
            "client_email",
            "client_address",
            "client_language",
            "currency",
            "due_date",
            "items",
            "tax_rate",
            "subtotal",
            "tax_total",
            "total",
            "amount_paid",
            "balance_due",
            "notes",
            "reminders_enabled",
            "delivery_status",
            "created_at",
            "updated_at",
            "finalized_at",
            "sent_at",
            "paid_at",
            "first_viewed_at",
            "view_count",
            "download_count",
        ]
        read_only_fields = fields
        list_serializer_class = InvoiceListSerializer

    def to_representation(self, invoice: Invoice) -> dict:
        return self.represent(invoice, invoice_lines([invoice.id])[invoice.id])

    def represent(self, invoice, lines: list[dict]) -> dict:
        """What DRF's fields would write, without their per-field machinery: a page of 50
        invoices with their lines is most of a list request's time otherwise (bench/).
        `invoice` is an Invoice or, in a list, a row of LIST_COLUMNS."""
        return {
            "id": invoice.id,
            "number": invoice.number,
            "status": invoice.status,
            "client_name": invoice.client_name,
            "client_email": invoice.client_email,
            "client_address": invoice.client_address,
            "client_language": invoice.client_language,
            "currency": invoice.currency,
            "due_date": invoice.due_date.isoformat(),
            "items": lines,
            "tax_rate": decimal_text(invoice.tax_rate),
            "subtotal": decimal_text(invoice.subtotal),
            "tax_total": decimal_text(invoice.tax_total),
            "total": decimal_text(invoice.total),
            "amount_paid": decimal_text(invoice.amount_paid),
            "balance_due": decimal_text(invoice.total - invoice.amount_paid),
            "notes": invoice.notes,
            "reminders_enabled": invoice.reminders_enabled,
            "delivery_status": invoice.delivery_status,
            "created_at": datetime_text(invoice.created_at),
            "updated_at": datetime_text(invoice.updated_at),
            "finalized_at": datetime_text(invoice.finalized_at),
            "sent_at": datetime_text(invoice.sent_at),
            "paid_at": datetime_text(invoice.paid_at),
            "first_viewed_at": datetime_text(invoice.first_viewed_at),
            "view_count": invoice.view_count,
            "download_count": invoice.download_count,
        }


# What a list reads of each invoice: its fields but the computed ones, as plain values.
LIST_COLUMNS = [
    name for name in InvoiceSerializer.Meta.fields if name not in ("items", "balance_due")
]


def invoice_lines(invoice_ids: list[int]) -> dict[int, list[dict]]:
    """The items of these invoices as the API writes them, by invoice id, read as plain values:
    an instance per line, and prefetch's machinery per invoice, cost a list more than all the
    rest of its work (bench/)."""
    lines = {pk: [] for pk in invoice_ids}
    rows = InvoiceItem.objects.filter(invoice_id__in=invoice_ids).values_list(
        "invoice_id", "description", "quantity", "unit_price", "amount"
    )
    for invoice_id, description, quantity, unit_price, amount in rows:
        lines[invoice_id].append(
            {
                "description": description,
                "quantity": decimal_text(quantity),
                "unit_price": decimal_text(unit_price),
                "amount": decimal_text(amount),
            }
        )
    return lines


@extend_schema_field({"type": "string", "enum": CURRENCY_CODES})
class CurrencyField(json_fields.CharField):
    """An ISO 4217 code, in upper or lower case (as the schema lists them); upper-cased."""

    default_error_messages = {"unknown": "'{value}' is not an ISO 4217 currency code."}

    def to_internal_value(self, data):
        code = super().to_internal_value(data)
        if code not in CURRENCY_CODES:
            self.fail("unknown", value=code)
        return code.upper()


class InvoiceInputSerializer(json_fields.ModelSerializer):
    """The fields a client writes on create (all but currency required) and on PATCH of a draft;
    `reminders_enabled` alone may also be PATCHed on an invoice not yet paid or void."""

    items = InvoiceItemSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)
    currency = CurrencyField(default="USD")
    tax_rate = json_fields.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        required=False,
        help_text="A percentage of the subtotal, 0 to 100.",
    )
    notes = json_fields.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Printed on the invoice; left out on create, the business profile's notes.",
    )
    client_language = serializers.ChoiceField(
        choices=settings.LANGUAGES,
        required=False,
        help_text="The language of the client's emails, download page and PDF; left out on "
        "create, the issuer's own language.",
    )
    reminders_enabled = json_fields.BooleanField(
        required=False,
        help_text="Remind the client on the days of the business profile's `reminder_days` "
        "once the invoice is sent (default true). Alone, PATCHable until it is paid or void.",
    )

    class Meta:
        model = Invoice
        fields = [
            "client_name", "client_email", "client_address", "client_language", "currency",
            "due_date", "items", "tax_rate", "notes", "reminders_enabled",
        ]  # fmt: skip

    def validate_items(self, items):
        """A PATCH replaces every line, so each line is whole although the update is partial
        (which would let a line's fields be left out)."""
        if not self.partial:
            return items
        lines = InvoiceItemSerializer(data=self.initial_data["items"], many=True)
        lines.is_valid(raise_exception=True)
        return lines.validated_data


LOGO_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
MAX_LOGO_BYTES = 256 * 1024
MAX_LOGO_SIDE = 2000
DATA_URL = re.compile(r"data:(image/png|image/jpeg);base64,([A-Za-z0-9+/=\s]+)")


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        "pattern": "^$|^data:image/(png|jpeg);base64,",
        "description": f"A PNG or JPEG image as a data URL, at most {MAX_LOGO_BYTES // 1024} KiB "
        f"and {MAX_LOGO_SIDE} pixels a side; null or empty removes it.",
    }
)
class LogoField(serializers.Field):
    default_error_messages = {
        "invalid": "Send a PNG or JPEG image as a data URL (data:image/png;base64,...).",
        "too_large": f"The image exceeds {MAX_LOGO_BYTES // 1024} KiB.",
        "too_wide": f"The image exceeds {MAX_LOGO_SIDE} pixels a side.",
    }

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, required=False, **kwargs)

    def validate_empty_values(self, data):
        if data is None or data == "":
            return True, b""
        return super().validate_empty_values(data)

    def to_internal_value(self, data) -> bytes:
        match = DATA_URL.fullmatch(data) if isinstance(data, str) else None
        if not match:
            self.fail("invalid")
        if len(match[2]) > MAX_LOGO_BYTES * 4 // 3 + 4:
            self.fail("too_large")
        try:
            content = base64.b64decode(match[2])
            with Image.open(BytesIO(content)) as image:  # its header only
                kind, size = image.format, image.size
        except (binascii.Error, UnidentifiedImageError, Image.DecompressionBombError, OSError):
            self.fail("invalid")
        if len(content) > MAX_LOGO_BYTES:
            self.fail("too_large")
        if LOGO_TYPES.get(kind) != match[1]:
            self.fail("invalid")
        if max(size) > MAX_LOGO_SIDE:
            self.fail("too_wide")
        try:  # decoded whole, now that its size is known to be small: the PDF must draw it
            with Image.open(BytesIO(content)) as image:
                image.load()
        except (OSError, SyntaxError, ValueError):
            self.fail("invalid")
        return content

    def to_representation(self, content) -> str | None:
        if not content:
            return None
        content = bytes(content)
        kind = "image/png" if content.startswith(b"\x89PNG") else "image/jpeg"
        return f"data:{kind};base64,{base64.b64encode(content).decode()}"


class BusinessProfileSerializer(json_fields.ModelSerializer):
    """Who the user's invoices come from. `notes` are the notes and terms new invoices start
    with."""

    logo = LogoField()
    reminder_days = serializers.ListField(
        child=json_fields.IntegerField(
            min_value=EARLIEST_REMINDER_DAY, max_value=LATEST_REMINDER_DAY
        ),
        max_length=MAX_REMINDER_STEPS,
        required=False,
        help_text="The days, counted from an invoice's due date (negative: before it), on which "
        "the client of a sent invoice with a balance due is reminded; empty sends none. "
        f"At most {MAX_REMINDER_STEPS}, each once, {EARLIEST_REMINDER_DAY} to "
        f"{LATEST_REMINDER_DAY}.",
    )
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = BusinessProfile
        fields = [
            "legal_name", "address", "tax_id", "payment_instructions", "notes", "logo",
            "reminder_days", "updated_at",
        ]  # fmt: skip

    def validate_reminder_days(self, days: list[int]) -> list[int]:
        if len(set(days)) != len(days):
            raise serializers.ValidationError("Each day may appear only once.")
        return sorted(days)


class SendInvoiceSerializer(serializers.Serializer):
    to = json_fields.EmailField(required=False)


class PaymentSerializer(json_fields.ModelSerializer):
    amount = json_fields.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))

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
    expires_in_hours = json_fields.IntegerField(
        min_value=1, max_value=168, default=lambda: settings.DOWNLOAD_TOKEN_TTL_HOURS
    )
    max_downloads = json_fields.IntegerField(
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


class TimelineItemSerializer(serializers.Serializer):
    """One thing that happened to an invoice or its emails (timeline.py); fields that do not
    apply to its type are null."""

    id = serializers.CharField(help_text="Stable across pages; unique within the timeline.")
    type = serializers.ChoiceField(timeline.TYPES)
    occurred_at = serializers.DateTimeField()
    description = serializers.CharField()
    actor = serializers.EmailField(allow_null=True, help_text="Who did it, if a person did.")
    to = serializers.EmailField(allow_null=True, help_text="The address an email went to.")
    ip_address = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField(allow_null=True)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    method = serializers.ChoiceField(Payment.Method.choices, allow_null=True)
    step = serializers.IntegerField(
        allow_null=True, help_text="A reminder's step: days from the due date."
    )
    reason = serializers.CharField(
        allow_null=True, help_text="Why an email was not delivered, in its receiver's words."
    )


class NewDownloadLinkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    preview_url = serializers.URLField(
        help_text="The same page for its owner: opening it counts no view. Give the client `url`."
    )
    expires_at = serializers.DateTimeField()
    max_downloads = serializers.IntegerField()
