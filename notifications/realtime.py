"""Notifications pushed over WebSockets (`/ws/notifications/`, notifications/consumers.py): each
user's connections are one group of the channel layer (Redis when REDIS_URL is set, in memory
otherwise). A push is a hint sent after commit; the database is the truth, and a client that
missed pushes asks for what it missed when it connects again."""

import hashlib
import logging
import secrets
import time
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from notifications.models import SocketTicket

logger = logging.getLogger(__name__)

TICKET_SECONDS = 60


def group_of(user_id: int) -> str:
    return f"notifications.user.{user_id}"


def push_after_commit(user_id: int, message: dict) -> None:
    """Send `message` to the user's connections once the caller's transaction commits."""
    transaction.on_commit(lambda: _push(user_id, message))


# After a failed push, none is tried for this long: with the layer down, a broadcast to many
# users would otherwise wait out a connect timeout for each of them.
PAUSE_SECONDS = 30
_paused_until = 0.0


def _push(user_id: int, message: dict) -> None:
    global _paused_until
    if time.monotonic() < _paused_until:
        return
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group_of(user_id), message)
    except Exception:  # the layer is down: the clients catch up when they connect again
        _paused_until = time.monotonic() + PAUSE_SECONDS
        logger.warning(
            "Push to user %s failed; none tried for %s s", user_id, PAUSE_SECONDS, exc_info=True
        )


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def issue_ticket(user) -> tuple[str, SocketTicket]:
    """A single-use ticket that opens one WebSocket as the user within TICKET_SECONDS (for a
    client without the session cookie: the API token never goes in a URL). Only its hash is
    stored; expired ones are removed here."""
    now = timezone.now()
    SocketTicket.objects.filter(expires_at__lte=now).delete()
    raw = secrets.token_urlsafe(32)
    ticket = SocketTicket.objects.create(
        user=user, digest=_digest(raw), expires_at=now + timedelta(seconds=TICKET_SECONDS)
    )
    return raw, ticket


def redeem_ticket(raw: str):
    """The user of a ticket not yet used nor expired, using it up; else None."""
    ticket = (
        SocketTicket.objects.filter(digest=_digest(raw), expires_at__gt=timezone.now())
        .select_related("user")
        .first()
    )
    if ticket is None or SocketTicket.objects.filter(pk=ticket.pk).delete()[0] != 1:
        return None  # unknown, expired, or redeemed by another connection at the same time
    return ticket.user if ticket.user.is_active else None
