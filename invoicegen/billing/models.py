from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round

from audit.tracking import Audited

# Days from an invoice's due date on which its client is reminded: before it (negative), after.
DEFAULT_REMINDER_DAYS = (-3, 1, 7, 14)
EARLIEST_REMINDER_DAY, LATEST_REMINDER_DAY, MAX_REMINDER_STEPS = -30, 90, 6


def default_reminder_days() -> list[int]:
    return list(DEFAULT_REMINDER_DAYS)


class Invoice(Audited):
    class Status(models.TextChoices):
        DRAFT = "draft"
        FINALIZED = "finalized"
        SENT = "sent"
        PAID = "paid"
        VOID = "void"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="invoices"
    )
    number = models.CharField(max_length=32, editable=False)
    year = models.PositiveSmallIntegerField(editable=False)
    sequence = models.PositiveIntegerField(editable=False)
    status = models.CharField(max_length=10, choices=Status, default=Status.DRAFT)
    client_name = models.CharField(max_length=200)
    client_email = models.EmailField()
    client_address = models.TextField(max_length=1000, blank=True)
    # What the client reads: its emails, its download page and the PDF (settings.LANGUAGES).
    client_language = models.CharField(
        max_length=8, choices=settings.LANGUAGES, default="en", db_default="en"
    )
    currency = models.CharField(max_length=3, default="USD")
    due_date = models.DateField()
    # A percentage (0 to 100) of the subtotal; tax_total is rounded to the cent, half up.
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0.00"))
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    tax_total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    amount_paid = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The address of its latest send, which may not be client_email (the client's AP address):
    # its reminders go there.
    sent_to = models.EmailField(blank=True, editable=False)
    paid_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(max_length=2000, blank=True)
    # Whether the client is reminded on the days of its owner's schedule (BusinessProfile).
    reminders_enabled = models.BooleanField(default=True)
    # The issuer's business details as they were when the invoice was finalized: an issued
    # invoice reads the same however its issuer's profile changes later.
    issuer = models.JSONField(default=dict, blank=True, editable=False)
    # How the client met the invoice through its links (downloads/): counted views of a link's
    # page and downloads; bookkeeping, not edits (quiet in the audit trail, billing/apps.py).
    first_viewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    view_count = models.PositiveIntegerField(default=0, editable=False)
    download_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at", "-id"], name="invoice_user_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "year", "sequence"], name="invoice_number_per_user_year"
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="invoice_total_not_negative"),
            models.CheckConstraint(
                condition=Q(tax_rate__gte=0, tax_rate__lte=100), name="invoice_tax_rate_percent"
            ),
            # Rounded to the cent: SQLite adds its decimals as floating point, which near the
            # largest amounts misses a sum by a fraction of a cent (exact on PostgreSQL).
            models.CheckConstraint(
                condition=Q(total=Round(models.F("subtotal") + models.F("tax_total"), 2)),
                name="invoice_total_is_subtotal_plus_tax",
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0, amount_paid__lte=models.F("total")),
                name="invoice_paid_within_total",
            ),
            models.CheckConstraint(
                condition=Q(sent_at__isnull=True) | ~Q(sent_to=""), name="invoice_sent_to_someone"
            ),
        ]

    def __str__(self):
        return self.number

    @property
    def balance_due(self) -> Decimal:
        return self.total - self.amount_paid


class BusinessProfile(Audited):
    """Who a user's invoices come from, printed on each of them; `notes` are the notes and
    terms a new invoice starts with. The logo is a PNG or JPEG image (services checks it)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="business_profile"
    )
    legal_name = models.CharField(max_length=200, blank=True)
    address = models.TextField(max_length=1000, blank=True)
    tax_id = models.CharField(max_length=50, blank=True)
    payment_instructions = models.TextField(max_length=2000, blank=True)
    notes = models.TextField(max_length=2000, blank=True)
    logo = models.BinaryField(blank=True, default=b"")
    # The user's reminder schedule, for each of their sent invoices: offsets in days from the due
    # date (the API checks them: -30 to 90, at most 6, no repeats); empty sends none.
    reminder_days = models.JSONField(default=default_reminder_days, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.legal_name or f"business of user {self.user_id}"


class InvoiceSequence(models.Model):
    """The last invoice number given out per user and year, locked while the next one is taken,
    so that numbers have no gaps and no duplicates."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    year = models.PositiveSmallIntegerField()
    last_value = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "year"], name="invoice_sequence_per_user_year")
        ]

    def __str__(self):
        return f"{self.user_id}/{self.year}: {self.last_value}"


class InvoiceReminder(models.Model):
    """One step of an invoice's reminder schedule, done: its row is written in the transaction
    that queues the email, and is unique per invoice and step, so no step is sent twice. A step
    missed (an outage) when a later one fell due is recorded as skipped, not sent; a step due
    when the invoice's address is on the suppression list as suppressed, with no email."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        SKIPPED = "skipped"
        SUPPRESSED = "suppressed"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="reminders")
    days = models.SmallIntegerField(help_text="The step: days from the due date.")
    outcome = models.CharField(max_length=10, choices=Outcome)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["invoice", "days"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "days"], name="invoice_reminder_per_step")
        ]

    def __str__(self):
        return f"{self.invoice_id} at {self.days:+d} days: {self.outcome}"


class InvoiceItem(Audited):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField(default=0)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=10, decimal_places=2)
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="item_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="item_unit_price_not_negative"
            ),
        ]

    def __str__(self):
        return self.description


class Payment(Audited):
    class Method(models.TextChoices):
        CARD = "card"
        BANK_TRANSFER = "bank_transfer"
        CASH = "cash"
        CHECK = "check"
        OTHER = "other"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    method = models.CharField(max_length=20, choices=Method)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive")
        ]

    def __str__(self):
        return f"{self.amount} on {self.invoice}"


class Subscription(Audited):
    class Plan(models.TextChoices):
        FREE = "free"
        PRO = "pro"
        BUSINESS = "business"

    class Status(models.TextChoices):
        ACTIVE = "active"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.CharField(max_length=10, choices=Plan)
    status = models.CharField(max_length=10, choices=Status, default=Status.ACTIVE)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "current_period_end"], name="subscription_due")]
        constraints = [
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_positive",
            )
        ]

    def __str__(self):
        return f"{self.plan} ({self.status}) for {self.user}"
