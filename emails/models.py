from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone


class EmailLog(models.Model):
    """The outbox: every email is a row first, written in the caller's transaction, then sent
    by a worker. A row ends `sent` or `failed` with its reason; the Message-ID is fixed when
    it is queued, so a retry is the same message to the receiving server."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    to_email = models.EmailField(max_length=254)
    from_email = models.CharField(max_length=254)
    subject = models.CharField(max_length=255)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    template_name = models.CharField(max_length=100)
    context = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The application's clock, like every time the outbox compares (emails.services).
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
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
    # The account an email to someone else goes out for (an invoice to its client): what that
    # account's daily sending quota counts.
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # email_on_behalf_of below serves it
    )

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
        ]

    def __str__(self):
        return f"{self.template_name} to {self.to_email} ({self.status})"
