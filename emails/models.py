from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from invoicegen.core.outbox import OutboxRow


class DeliveryStatus(models.TextChoices):
    """What became of a sent email, as its provider's events tell. Each has a rank and a row
    only moves to a higher one, so events arriving out of order never move it back: a late
    `delivered` does not undo a `bounced`, a soft bounce retried and delivered ends
    `delivered`. Bounced and rejected share a rank (the first one stands); a complaint comes
    after delivery and outranks all; `suppressed` is a send refused here, before any call."""

    UNKNOWN = "", "unknown"
    DEFERRED = "deferred"
    SOFT_BOUNCED = "soft_bounced"
    DELIVERED = "delivered"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    REJECTED = "rejected"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"


DELIVERY_RANKS = {
    DeliveryStatus.UNKNOWN: 0,
    DeliveryStatus.DEFERRED: 10,
    DeliveryStatus.SOFT_BOUNCED: 15,
    DeliveryStatus.DELIVERED: 20,
    DeliveryStatus.UNSUBSCRIBED: 30,
    DeliveryStatus.BOUNCED: 40,
    DeliveryStatus.REJECTED: 40,
    DeliveryStatus.COMPLAINED: 50,
    DeliveryStatus.SUPPRESSED: 60,
}


class EmailLog(OutboxRow):
    """The email outbox (core's OutboxRow): a row ends `sent` or `failed` with its reason; the
    Message-ID is fixed when it is queued, so a retry is the same message to the receiving
    server."""

    to_email = models.EmailField(max_length=254)
    from_email = models.CharField(max_length=254)
    subject = models.CharField(max_length=255)
    template_name = models.CharField(max_length=100)
    context = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    notification = models.ForeignKey(
        "notifications.Notification",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="emails",
    )
    resource_type = models.CharField(max_length=50, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    # The account an email to someone else goes out for (a document to its client): what that
    # account's daily sending quota counts.
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # email_on_behalf_of below serves it
    )
    # Where a reply goes: the account an email goes out for (its client answers the issuer).
    reply_to = models.EmailField(max_length=254, blank=True)
    # The provider's id of the accepted message (anymail's message_id), which its delivery
    # events name; empty over SMTP, where `message_id` identifies the message.
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    delivery_status = models.CharField(
        max_length=12, choices=DeliveryStatus, default=DeliveryStatus.UNKNOWN, blank=True
    )
    delivery_rank = models.PositiveSmallIntegerField(default=0)  # DELIVERY_RANKS[delivery_status]
    # What its reader may unsubscribe from (emails/unsubscribe.py): a notification type, a
    # digest, a kind of email an account sends its clients; empty when it must reach them.
    topic = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The language its reader reads (settings.LANGUAGES): it is rendered in it, on any worker.
    language = models.CharField(max_length=8, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The sweeper's question: what is due, or stuck in sending?
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="email_pending",
            ),
            models.Index(fields=["resource_type", "resource_id"], name="email_resource"),
            models.Index(fields=["created_at"], name="email_created_at"),
            models.Index(
                fields=["on_behalf_of", "created_at"],
                condition=Q(on_behalf_of__isnull=False),
                name="email_on_behalf_of",
            ),
            # The dashboard's days: sent, and failed (by their last attempt).
            models.Index(fields=["sent_at"], condition=Q(status="sent"), name="email_sent_at"),
            models.Index(
                fields=["claimed_at"], condition=Q(status="failed"), name="email_failed_at"
            ),
        ]

    def __str__(self):
        return f"{self.template_name} to {self.to_email} ({self.status})"

    @property
    def acceptance_key(self) -> str:
        return f"emails:accepted:{self.message_id}"


class EmailEvent(models.Model):
    """One delivery event of a provider (or an SMTP refusal at send time), stored once: its
    provider's event id is unique for each recipient (one Amazon SES notification names
    several). The raw payload is not kept (it may carry signatures)."""

    email = models.ForeignKey(
        EmailLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    provider = models.CharField(max_length=30)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=12, choices=DeliveryStatus)
    recipient = models.CharField(max_length=254, blank=True)
    description = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id", "recipient"], name="email_event_once"
            )
        ]

    def __str__(self):
        return f"{self.event_type} of {self.recipient} ({self.provider})"


class EmailSuppression(models.Model):
    """An address no email goes to any more: it bounced hard, complained, or unsubscribed at
    the provider. Addresses are stored lower-cased."""

    class Reason(models.TextChoices):
        BOUNCED = "bounced"
        COMPLAINED = "complained"
        UNSUBSCRIBED = "unsubscribed"

    address = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=12, choices=Reason)
    source = models.CharField(max_length=30)  # the provider, or "smtp"
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.address} ({self.reason})"


class EmailOptOut(models.Model):
    """An address that unsubscribed from one account's emails of one topic (a client stopping
    an account's reminders): those emails are not sent to it, the others are."""

    address = models.EmailField(max_length=254)  # lower-cased
    topic = models.CharField(max_length=64)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["address", "topic", "sender"], name="email_opt_out_once"
            )
        ]
        verbose_name = "email opt-out"

    def __str__(self):
        return f"{self.address} from {self.topic} of {self.sender_id}"
