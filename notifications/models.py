from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class Notification(models.Model):
    """An in-app notification for one user; unread while read_at is null."""

    class Type(models.TextChoices):
        INVOICE_FINALIZED = "invoice_finalized"
        INVOICE_SENT = "invoice_sent"
        INVOICE_PAID = "invoice_paid"
        SUBSCRIPTION_ACTIVATED = "subscription_activated"
        SUBSCRIPTION_CANCELLED = "subscription_cancelled"
        SUBSCRIPTION_RENEWED = "subscription_renewed"
        PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 (a name)
        EMAIL_VERIFICATION = "email_verification"
        ACCOUNT_ACTIVITY = "account_activity"
        ADMIN_MESSAGE = "admin_message"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,  # notification_user_newest serves it
    )
    type = models.CharField(max_length=32, choices=Type)
    title = models.CharField(max_length=200)
    message = models.TextField(blank=True)
    resource_type = models.CharField(max_length=50, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="notification_user_newest"),
            # The unread count reads this small index only.
            models.Index(
                fields=["user"], condition=Q(read_at__isnull=True), name="notification_unread"
            ),
        ]

    def __str__(self):
        return f"{self.type} for {self.user_id}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None
