from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now


class SecureDownloadToken(models.Model):
    """A time-bound, count-limited link to one resource. The raw token is shown once (the
    API answer or the email) and only its SHA-256 is kept."""

    token_hash = models.CharField(max_length=64, unique=True)
    resource_type = models.CharField(max_length=50)
    resource_id = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email = models.ForeignKey(
        "emails.EmailLog",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="download_tokens",
        help_text="The email the link went out in.",
    )
    expires_at = models.DateTimeField()
    max_downloads = models.PositiveSmallIntegerField()
    download_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Why, in the words of the resource's owner, shown on the link's page ("" when the sender
    # withdrew this one link).
    revoked_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["resource_type", "resource_id"], name="download_resource"),
            models.Index(fields=["expires_at"], name="download_expires_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(download_count__lte=F("max_downloads")),
                name="download_count_within_max",
            ),
            models.CheckConstraint(
                condition=Q(max_downloads__gte=1, max_downloads__lte=100),
                name="download_max_between_1_and_100",
            ),
        ]

    def __str__(self):
        return f"link {self.token_hash[:8]}… to {self.resource_type} {self.resource_id}"

    @property
    def downloads_left(self) -> int:
        return self.max_downloads - self.download_count


class DownloadEvent(models.Model):
    """Every download attempt, granted or denied, and every counted view of a link's landing
    page (a person opening it: not its owner, not a scanner, at most one per link each
    VIEW_WINDOW, downloads/services.py)."""

    class Kind(models.TextChoices):
        DOWNLOAD = "download"
        VIEWED = "viewed"

    class Reason(models.TextChoices):
        GRANTED = "granted"
        EXPIRED = "expired"
        REVOKED = "revoked"
        EXHAUSTED = "exhausted"
        UNKNOWN = "unknown"

    token = models.ForeignKey(
        SecureDownloadToken,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
    )
    kind = models.CharField(max_length=10, choices=Kind, default=Kind.DOWNLOAD)
    granted = models.BooleanField()
    reason = models.CharField(max_length=10, choices=Reason)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["created_at"], name="download_event_created_at"),
            # The last counted view of a link.
            models.Index(fields=["token", "kind", "-created_at"], name="download_event_last"),
        ]

    def __str__(self):
        what = "viewed" if self.kind == self.Kind.VIEWED else self.reason
        return f"{what} at {self.created_at}"
