"""The digests' beat task and the tasks it fans out to (notifications/digests.py)."""

from celery import shared_task
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from notifications import digests, types

CHUNK = 500  # users a task: the work spreads over every worker


@shared_task
def send_notification_digests() -> int:
    """Every 15 minutes (08:00 falls on a quarter hour in every time zone): a task for each
    chunk of the users whose digest is due. Returns how many users were due."""
    now = timezone.now()
    due = 0
    for frequency in types.DIGESTS:
        users = digests.due_users(frequency, now)
        due += len(users)
        for start in range(0, len(users), CHUNK):
            send_digests.delay(users[start : start + CHUNK], frequency, now.isoformat())
    return due


@shared_task
def send_digests(user_ids: list[int], frequency: str, now: str) -> int:
    """The digests of these users (a chunk), as due at `now` (the beat's moment)."""
    return digests.send_due_digests(user_ids, frequency, parse_datetime(now))
