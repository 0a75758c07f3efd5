"""What became of sent emails: the providers' delivery events, applied once each and never
backwards, and the suppression list they fill.

An event is stored with its provider's event id under a unique constraint (`INSERT ... ON
CONFLICT DO NOTHING`): the same event posted fifty times, or by two processes at once, is one
row and one change. The email row moves with a conditional UPDATE (`delivery_rank < rank`):
events arriving out of order never move it back (models.DeliveryStatus gives the order). A hard
bounce, a complaint or an unsubscribe suppresses the address; the next email to it is not sent.

What the email was about is the business of the app that sent it: it registers a handler for
its resource type (`register_delivery_problem_handler`), called once, in the event's
transaction, when an email about one of its resources bounces or draws a complaint.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from audit import services as audit
from emails.models import DELIVERY_RANKS, DeliveryStatus, EmailEvent, EmailLog, EmailSuppression

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


_INSERT_EVENT = """
    INSERT INTO emails_emailevent
        (email_id, provider, event_id, event_type, recipient, description, occurred_at,
         received_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (provider, event_id, recipient) DO NOTHING
    RETURNING id
"""


@transaction.atomic
def record_delivery_event(event: DeliveryEvent) -> EmailEvent | None:
    """Store the event once and move its email forward; None for an event seen before."""
    email = _email_of(event)
    values = [
        email.pk if email else None,
        event.provider[:30],
        event.event_id[:255],
        event.status,
        event.recipient[:254],
        event.description[:500],
        event.occurred_at,
        timezone.now(),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_EVENT, values)
        inserted = cursor.fetchone()
    if inserted is None:
        return None
    stored = EmailEvent(pk=inserted[0], email=email, **_fields(event))
    first_problem = email is not None and _move(email.pk, event.status)
    if event.status in SUPPRESSING and event.recipient:
        suppress_address(
            event.recipient,
            reason=SUPPRESSING[event.status],
            source=event.provider,
            description=event.description,
        )
    if first_problem and event.status in PROBLEMS:
        handler = _problem_handlers.get(email.resource_type)
        if handler is not None:
            handler(
                email.resource_id,
                to=email.to_email,
                problem=str(event.status),
                description=event.description,
            )
    return stored


def _fields(event: DeliveryEvent) -> dict:
    return {
        "provider": event.provider,
        "event_id": event.event_id,
        "event_type": event.status,
        "recipient": event.recipient,
        "description": event.description,
        "occurred_at": event.occurred_at,
    }


def _email_of(event: DeliveryEvent) -> EmailLog | None:
    rows = EmailLog.objects.only("pk", "to_email", "resource_type", "resource_id")
    if event.email_id is not None:
        return rows.filter(pk=event.email_id).first()
    if not event.message_id:
        return None
    return rows.filter(provider_message_id=event.message_id).first()


def _move(email_id: int, status: DeliveryStatus) -> bool:
    """Move the row up to `status`, never back; True when this is its first problem (the row
    was below every problem's rank), which its sender hears of."""
    rank = DELIVERY_RANKS[status]
    change = {"delivery_status": status, "delivery_rank": rank}
    rows = EmailLog.objects.filter(pk=email_id)
    if status in PROBLEMS and rows.filter(delivery_rank__lt=PROBLEM_RANK).update(**change):
        return True
    rows.filter(delivery_rank__lt=rank).update(**change)
    return False


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


def record_refused_webhook(*, provider: str, reason: str) -> None:
    """A delivery webhook that failed its provider's authentication: a security event."""
    audit.log(
        "email.webhook_refused",
        metadata={"provider": provider, "reason": reason[:300]},
        success=False,
    )
