"""What became of sent emails: the providers' delivery events, applied once each and never
backwards, and the suppression list they fill.

An event is stored with its provider's event id under a unique constraint (`INSERT ... ON
CONFLICT DO NOTHING`): the same event posted fifty times, or by two processes at once, is one
row and one change. The email row moves with a conditional UPDATE (`delivery_rank < rank`):
events arriving out of order never move it back (models.DeliveryStatus gives the order). A hard
bounce, a complaint or an unsubscribe suppresses the address; the next email to it is not sent.

What the email was about is the business of the app that sent it: it registers a handler for
its resource type (`register_delivery_problem_handler`), called once, in the event's
transaction, when an email sent for an account to someone else about one of its resources
bounces or draws a complaint.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from audit import context as audit_context
from audit import services as audit
from emails.models import DELIVERY_RANKS, DeliveryStatus, EmailEvent, EmailLog, EmailSuppression
from invoicegen.core.throttles import FixedWindow

SUPPRESSING = {
    DeliveryStatus.BOUNCED: EmailSuppression.Reason.BOUNCED,
    DeliveryStatus.COMPLAINED: EmailSuppression.Reason.COMPLAINED,
    DeliveryStatus.UNSUBSCRIBED: EmailSuppression.Reason.UNSUBSCRIBED,
}
# The problems an email's sender hears of (once an email, the first of them).
PROBLEMS = (DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED)
PROBLEM_RANK = DELIVERY_RANKS[DeliveryStatus.BOUNCED]

# resource type -> handler(resource_id, *, to, problem, description)
_problem_handlers: dict[str, Callable] = {}


def register_delivery_problem_handler(resource_type: str, handler: Callable) -> None:
    """`handler(resource_id, *, to, problem, description)` runs when an email about a resource
    of this type first bounces or draws a complaint (`problem`: "bounced" or "complained")."""
    _problem_handlers[resource_type] = handler


@dataclass(frozen=True)
class DeliveryEvent:
    """A delivery event, whatever its source: `message_id` is the provider's id of the message
    (or `email_id` the row's, for a refusal met while sending)."""

    provider: str
    event_id: str
    status: DeliveryStatus
    recipient: str = ""
    description: str = ""
    occurred_at: datetime = field(default_factory=timezone.now)
    message_id: str = ""
    email_id: int | None = None


def stable_event_id(payload) -> str:
    """For a provider whose events carry no id (a Postmark delivery): the digest of the event
    as posted, the same at every retry of it."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def normalize_address(address: str) -> str:
    return address.strip().lower()


_COLUMNS = (
    "email_id, provider, event_id, event_type, recipient, description, occurred_at, received_at"
)
# The email is the row the event names, or the one its provider's message id names: looked up
# in the insert itself, which costs no round trip of its own.
_EMAIL = "COALESCE(%s, (SELECT id FROM emails_emaillog WHERE provider_message_id = %s LIMIT 1))"
_ROW = f"({_EMAIL}, {', '.join(['%s'] * 7)})"
_CHUNK = 500  # events a statement: well within any database's limit of parameters


@transaction.atomic
def record_delivery_events(events: list[DeliveryEvent]) -> list[EmailEvent]:
    """Store the events (a webhook's batch) that are new, each once, and move their emails
    forward, in a few statements whatever their number: one insert that finds the emails and
    answers which events were new, one conditional UPDATE a status. A bounce, a complaint or
    an unsubscribe suppresses its address, and an email's first bounce or complaint is told
    to its sender. The new events are returned."""
    if not events:
        return []
    new = []
    for start in range(0, len(events), _CHUNK):
        new += _insert_new(events[start : start + _CHUNK])
    plain = {}  # status -> email ids it moves (a problem is moved on its own, below)
    for stored, event in new:
        if stored.email_id is not None and event.status not in PROBLEMS:
            plain.setdefault(event.status, set()).add(stored.email_id)
    for status in sorted(plain, key=DELIVERY_RANKS.get):  # the highest rank is applied last
        rank = DELIVERY_RANKS[status]
        EmailLog.objects.filter(pk__in=plain[status], delivery_rank__lt=rank).update(
            delivery_status=status, delivery_rank=rank
        )
    for stored, event in new:
        _apply_problem(stored, event)
    return [stored for stored, _ in new]


def record_delivery_event(event: DeliveryEvent) -> EmailEvent | None:
    """One event (an SMTP refusal met while sending); None for one seen before."""
    stored = record_delivery_events([event])
    return stored[0] if stored else None


def _insert_new(events: list[DeliveryEvent]) -> list[tuple[EmailEvent, DeliveryEvent]]:
    """Insert the events in one statement; those that were not there already (the unique
    constraint answers, also against a concurrent insert of the same event)."""
    now, rows, params = timezone.now(), {}, []
    for event in events:
        fields = _fields(event)
        key = (fields["provider"], fields["event_id"], fields["recipient"])
        if key in rows:  # the same event twice in one post
            continue
        rows[key] = (EmailEvent(**fields), event)
        # No message id names no email (an email sent over SMTP has none).
        params += [event.email_id, event.message_id or None, *fields.values(), now]
    values = ", ".join([_ROW] * len(rows))
    sql = (
        f"INSERT INTO emails_emailevent ({_COLUMNS}) VALUES {values} "  # noqa: S608 (placeholders)
        "ON CONFLICT (provider, event_id, recipient) DO NOTHING "
        "RETURNING id, email_id, provider, event_id, recipient"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = cursor.fetchall()
    new = []
    for pk, email_id, *key in inserted:
        stored, event = rows[tuple(key)]
        stored.pk, stored.email_id = pk, email_id
        new.append((stored, event))
    return new


def _fields(event: DeliveryEvent) -> dict:
    """The event's columns, in _COLUMNS' order, cut to their lengths."""
    return {
        "provider": event.provider[:30],
        "event_id": event.event_id[:255],
        "event_type": event.status,
        "recipient": event.recipient[:254],
        "description": event.description[:500],
        "occurred_at": event.occurred_at,
    }


def storable(text: str) -> str:
    """A provider's text as the database can hold it: a lone surrogate or a NUL (JSON allows
    both) would fail the insert, and the provider would post the batch again forever."""
    return text.encode("utf-8", "replace").decode().replace("\x00", "\ufffd")


def _apply_problem(stored: EmailEvent, event: DeliveryEvent) -> None:
    """A problem moves its email on its own (its first one is told to the sender), and a
    bounce, complaint or unsubscribe suppresses the address."""
    first_problem = (
        stored.email_id is not None
        and event.status in PROBLEMS
        and _move(stored.email_id, event.status)
    )
    if event.status in SUPPRESSING and event.recipient:
        suppress_address(
            event.recipient,
            reason=SUPPRESSING[event.status],
            source=event.provider,
            description=event.description,
        )
    if first_problem:
        _tell_sender(stored.email_id, event)


def _move(email_id: int, status: DeliveryStatus) -> bool:
    """Move the row up to a problem's status, never back; True when it is its first problem
    (the row was below every problem's rank), which its sender hears of."""
    rank = DELIVERY_RANKS[status]
    change = {"delivery_status": status, "delivery_rank": rank}
    rows = EmailLog.objects.filter(pk=email_id)
    if rows.filter(delivery_rank__lt=PROBLEM_RANK).update(**change):
        return True
    rows.filter(delivery_rank__lt=rank).update(**change)
    return False


def _tell_sender(email_id: int, event: DeliveryEvent) -> None:
    """An email sent for an account to someone else (`on_behalf_of`): the app whose resource
    it is about tells that account."""
    email = (
        EmailLog.objects.filter(pk=email_id, on_behalf_of__isnull=False)
        .only("to_email", "resource_type", "resource_id")
        .first()
    )
    handler = _problem_handlers.get(email.resource_type) if email else None
    if handler is not None:
        handler(
            email.resource_id,
            to=email.to_email,
            problem=str(event.status),
            description=event.description,
        )


def suppress_address(
    address: str, *, reason: str, source: str, description: str = ""
) -> EmailSuppression | None:
    """Put the address on the suppression list (audited); None if it was there already."""
    address = normalize_address(address)
    with transaction.atomic():
        suppression, created = EmailSuppression.objects.get_or_create(
            address=address,
            defaults={"reason": reason, "source": source, "description": description[:500]},
        )
        if not created:
            return None
        audit.log(
            "email.address_suppressed",
            target=("email_suppression", suppression.pk),
            metadata={"address": address, "reason": reason, "source": source},
        )
    return suppression


def is_suppressed(address: str) -> bool:
    return EmailSuppression.objects.filter(address=normalize_address(address)).exists()


@transaction.atomic
def remove_suppression(suppression: EmailSuppression, *, actor) -> EmailSuppression:
    """Let emails go to the address again (staff, audited)."""
    audit.log(
        "email.suppression_removed",
        actor=actor,
        target=("email_suppression", suppression.pk),
        metadata={"address": suppression.address, "reason": suppression.reason},
    )
    suppression.delete()
    return suppression


def _refused_webhook_posts() -> FixedWindow:
    return FixedWindow("email-webhook-refusals", settings.WEBHOOK_REFUSED_THROTTLE_RATE)


def refused_webhooks_retry_after() -> int | None:
    """Seconds the client must wait when its refused webhook posts have used up
    WEBHOOK_REFUSED_THROTTLE_RATE, whichever provider they were for, else None."""
    return _refused_webhook_posts().retry_after(audit_context.current().ip_address or "")


def record_refused_webhook(*, provider: str, reason: str) -> None:
    """A delivery webhook that failed its provider's authentication: counted against its client
    address, and a security event once a minute per provider and address at most, so that a
    flood of forged posts cannot fill the trail."""
    ip = audit_context.current().ip_address or ""
    _refused_webhook_posts().count(ip)
    try:
        first = cache.add(f"email-webhook-refused:{provider}:{ip}", True, timeout=60)
    except (RedisError, OSError):  # the cache is down: the refusal is recorded, not lost
        first = True
    if not first:
        return
    audit.log(
        "email.webhook_refused",
        metadata={"provider": provider, "reason": reason[:300]},
        success=False,
    )
