"""Digest emails: the notifications a user chose to get daily or weekly by email
(notifications/preferences.py), gathered into one email at 08:00 in the user's time zone (a
weekly one on Monday), grouped by type with their counts.

A window is the time up to one such 08:00; its digest carries what was still waiting then.
There is one digest a user, frequency and window (a unique row written in the transaction that
claims the notifications and queues the email), so two beats, or a task retried half-way,
send it once; a window with nothing waiting sends nothing. The in-app feed is not touched."""

import datetime
import zoneinfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone, translation

from emails import services as emails
from notifications import types
from notifications.models import Notification, NotificationDigest

DIGEST_HOUR = 8
TEMPLATE = "notification_digest"


def window_start(frequency: str, now: datetime.datetime, zone: datetime.tzinfo):
    """The last 08:00 (a weekly digest: of a Monday) in `zone` at or before `now`."""
    local = now.astimezone(zone)
    start = local.replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
    step = datetime.timedelta(days=1)
    if frequency == types.WEEKLY:
        start -= local.weekday() * step
        step *= 7
    # Aware arithmetic keeps the wall clock: 08:00 stays 08:00 across a change of DST.
    return start if start <= local else start - step


def user_zone(user) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(getattr(user, "timezone", "") or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def due_users(frequency: str, now: datetime.datetime) -> list[int]:
    """Ids of the users whose digest of this frequency is due: something waited for it from
    before the last window ended in their time zone (one grouped query on the pending index)."""
    waiting = Notification.objects.filter(digest=frequency, digested_in__isnull=True)
    oldest = dict(
        waiting.values("user_id")
        .annotate(oldest=Min("created_at"))
        .values_list("user_id", "oldest")
        .order_by()
    )
    users = get_user_model().objects.filter(pk__in=oldest).order_by("pk")
    return [
        user.pk
        for user in users.iterator(chunk_size=2000)
        if oldest[user.pk] < window_start(frequency, now, user_zone(user))
    ]


def send_due_digests(user_ids: list[int], frequency: str, now=None) -> int:
    """Send each of these users the digest of the window that ended last in their time zone,
    unless it was sent; the number sent."""
    now = now or timezone.now()
    sent = 0
    for user in get_user_model().objects.filter(pk__in=user_ids).order_by("pk"):
        start = window_start(frequency, now, user_zone(user))
        if send_digest(user, frequency, start) is not None:
            sent += 1
    return sent


def send_digest(user, frequency: str, start: datetime.datetime) -> NotificationDigest | None:
    """The user's digest of the window ending at `start`: what waited for it, claimed and
    emailed in one transaction. None when it was sent already or nothing waited."""
    try:
        with transaction.atomic():
            digest = NotificationDigest.objects.create(
                user=user, frequency=frequency, window_start=start
            )
            waiting = Notification.objects.filter(
                user=user, digest=frequency, digested_in__isnull=True, created_at__lt=start
            )
            count = waiting.update(digested_in=digest)
            if not count:
                transaction.set_rollback(True)  # never an empty digest, and no row kept
                return None
            digest.notification_count = count
            digest.save(update_fields=["notification_count"])
            emails.queue_email(
                TEMPLATE,
                to=user.email,
                context=_context(user, digest),
                language=getattr(user, "language", ""),
                user=user,
                resource=("notification_digest", digest.pk),
                topic=f"digest.{frequency}",
            )
            return digest
    except IntegrityError:  # another beat or a retried task sent it
        return None


def _context(user, digest: NotificationDigest) -> dict:
    """The digest's groups, by type: its count and the titles of its notifications, in the
    user's language."""
    with translation.override(getattr(user, "language", None)):
        return _groups(user, digest)


def _groups(user, digest: NotificationDigest) -> dict:
    groups = {}
    for notification in digest.notifications.order_by("created_at", "id"):
        group = groups.setdefault(
            notification.type, {"label": types.label(notification.type), "items": []}
        )
        group["items"].append(notification.title)
    return {
        "name": user.get_short_name(),
        "frequency": digest.frequency,
        "count": digest.notification_count,
        "groups": [
            {**group, "count": len(group["items"]), "items": group["items"][:10]}
            for group in sorted(groups.values(), key=lambda g: (-len(g["items"]), g["label"]))
        ],
    }
