from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from invoicegen.core.outbox import OutboxRow


class WebhookEndpoint(models.Model):
    """A URL of a user's that receives the events it subscribes to, signed with its secret
    (Standard Webhooks). The secrets are stored encrypted (webhooks/secrets.py): signing needs
    them whole. After a rotation the previous secret signs too, until `previous_secret_expires_at`.
    `failing_since` is when its current run of failed attempts began (none: its last attempt
    succeeded); a run long enough disables it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    event_types = models.JSONField(default=list)
    secret = models.TextField(editable=False)
    previous_secret = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "enabled"], name="webhook_endpoint_user")]

    def __str__(self):
        return self.url


class WebhookDelivery(OutboxRow):
    """One message to one endpoint (core's OutboxRow). `message_id` is its `webhook-id`: the
    same at every attempt, and shared by the endpoints one event went to and by the replays of
    a delivery, so that a receiver deduplicates on it. `payload` is the body exactly as signed."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=100)
    message_id = models.CharField(max_length=40)
    payload = models.TextField()
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint"),
            # The sweeper's question: what is due, or stuck in sending?
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="webhook_pending",
            ),
            models.Index(fields=["message_id"], name="webhook_message_id"),
            # A recovery's question: what failed, of one endpoint, since when?
            models.Index(
                fields=["endpoint", "id"],
                condition=Q(status="failed"),
                name="webhook_delivery_failed",
            ),
        ]

    def __str__(self):
        return f"{self.event_type} {self.message_id} ({self.status})"

    @property
    def acceptance_key(self) -> str:
        return f"webhooks:accepted:{self.pk}"


class WebhookAttempt(models.Model):
    """One attempt at a delivery: what the endpoint answered (`status_code`, the first KB of
    its body) or why there was no answer (`error`), and how long it took."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(db_default=Now())
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.status_code or self.error} at {self.attempted_at}"
