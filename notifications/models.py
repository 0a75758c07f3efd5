from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from notifications import types


class Notification(models.Model):
    """A notification for one user, of a registered type (notifications/types.py), whose title
    and body are rendered from its parameters; unread while read_at is null. It is in the
    user's feed unless they switched the type off in the app (`in_app`); `digest` says which
    digest email (daily or weekly) is to carry it, when the user chose one for its emails."""

    class Digest(models.TextChoices):
        NONE = "", "none"
        DAILY = types.DAILY, "daily"
        WEEKLY = types.WEEKLY, "weekly"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_index=False,  # notification_user_newest serves it
    )
    type = models.CharField(max_length=64)  # registered by the app that sends it
    params = models.JSONField(default=dict, blank=True)
    resource_type = models.CharField(max_length=50, blank=True)
    resource_id = models.CharField(max_length=64, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    read_at = models.DateTimeField(null=True, blank=True)
    in_app = models.BooleanField(default=True)
    digest = models.CharField(max_length=6, choices=Digest, default=Digest.NONE, blank=True)
    digested_in = models.ForeignKey(
        "NotificationDigest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
        db_index=False,  # notification_digested_in serves it
    )
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at", "-id"], name="notification_user_newest"),
            # The unread count reads this small index only.
            models.Index(
                fields=["user"],
                condition=Q(read_at__isnull=True, in_app=True),
                name="notification_unread",
            ),
            # What waits for a digest: small, whatever the size of the table.
            models.Index(
                fields=["digest", "user"],
                condition=Q(digested_in__isnull=True) & ~Q(digest=""),
                name="notification_digest_pending",
            ),
            models.Index(
                fields=["digested_in"],
                condition=Q(digested_in__isnull=False),
                name="notification_digested_in",
            ),
        ]

    def __str__(self):
        return f"{self.type} for {self.user_id}: {self.title}"

    @property
    def title(self) -> str:
        return types.render(self.type, self.params)[0]

    @property
    def message(self) -> str:
        return types.render(self.type, self.params)[1]

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class NotificationPreference(models.Model):
    """How often one type reaches a user on one channel, as the user chose it
    (notifications/preferences.py); without a row, the type's default applies."""

    class Frequency(models.TextChoices):
        IMMEDIATE = types.IMMEDIATE
        DAILY = types.DAILY
        WEEKLY = types.WEEKLY
        OFF = types.OFF

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    type = models.CharField(max_length=64)
    channel = models.CharField(max_length=16)
    frequency = models.CharField(max_length=9, choices=Frequency)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["type", "channel"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "type", "channel"], name="notification_preference_once"
            )
        ]

    def __str__(self):
        return f"{self.type} by {self.channel}: {self.frequency}"


class NotificationDigest(models.Model):
    """One digest email: what a user's notifications of one frequency gathered in the window
    that ended at `window_start` (08:00 in their time zone). One a user, frequency and window:
    the constraint holds it to once, whoever tries to send it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_digests"
    )
    frequency = models.CharField(max_length=6, choices=Notification.Digest)
    window_start = models.DateTimeField()
    notification_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-window_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "frequency", "window_start"], name="notification_digest_once"
            )
        ]

    def __str__(self):
        return f"{self.frequency} digest of {self.window_start:%Y-%m-%d} for {self.user_id}"


class SocketTicket(models.Model):
    """A single-use, short-lived ticket that opens a WebSocket as its user (its hash only)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"ticket of {self.user_id} until {self.expires_at:%H:%M:%S}"
