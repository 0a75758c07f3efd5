"""Domain events after commit: the seam that real-time pushes and outgoing webhooks attach to.

A domain app records an event through `audit.services.record_event()` (its audit entry, in the
transaction); once the transaction commits, every subscriber whose pattern matches receives it.
What must not be lost is stored in the transaction by the event's own function (a notification,
an outbox row); a subscriber reacts to what is already committed, and one that fails is logged
without stopping the others (or the request).
"""

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.db import transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    name: str  # the audit action, e.g. "invoice.sent"
    resource_type: str
    resource_id: str
    actor_id: int | None
    params: dict
    entry_id: int  # the audit entry that records it
    occurred_at: datetime.datetime


Subscriber = Callable[[Event], None]
_subscribers: list[tuple[str, Subscriber]] = []


def subscribe(pattern: str, subscriber: Subscriber) -> None:
    """`pattern`: an event name, a prefix ending in "." (`invoice.`), or "*" for every event.
    Subscribe in an AppConfig.ready(); subscribing the same function twice is a no-op."""
    if (pattern, subscriber) not in _subscribers:
        _subscribers.append((pattern, subscriber))


def unsubscribe(pattern: str, subscriber: Subscriber) -> None:
    _subscribers.remove((pattern, subscriber))


def _matches(pattern: str, name: str) -> bool:
    return pattern == "*" or name == pattern or (pattern.endswith(".") and name.startswith(pattern))


def publish(event: Event) -> None:
    """Hand the event to its subscribers once the current transaction commits (at once outside
    one); nothing if it rolls back."""
    for pattern, subscriber in _subscribers:
        if _matches(pattern, event.name):
            transaction.on_commit(partial(_deliver, subscriber, event))


def _deliver(subscriber: Subscriber, event: Event) -> None:
    try:
        subscriber(event)
    except Exception:
        logger.exception("subscriber %s failed on %s", subscriber.__qualname__, event.name)
