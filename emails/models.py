from django.conf import settings
from django.db import models
from django.db.models import Q

from invoicegen.core.outbox import OutboxRow


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
