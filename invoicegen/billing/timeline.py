"""An invoice's timeline: what happened to it and to its emails, oldest first, read from the
rows that already record it (no copy to keep in step): its audit entries, the delivery events
of its emails, and its emails that were never sent. The three are merged by time in keyset
pages, so a page deep in a long timeline costs what the first does."""

import dataclasses
import datetime
from decimal import Decimal

from django.db.models import (
    CharField,
    DateTimeField,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import Case
from django.db.models.functions import Cast, Coalesce

from audit.models import AuditLog
from emails.models import DeliveryStatus, EmailEvent, EmailLog
from invoicegen.billing.models import Invoice, Payment

# The audit entries of an invoice that its timeline shows, by the name it shows them under.
ENTRY_TYPES = {
    "invoice.created": "created",
    "invoice.finalized": "finalized",
    "invoice.sent": "sent",
    "invoice.reminder_sent": "reminder_sent",
    "invoice.reminder_suppressed": "reminder_suppressed",
    "download.viewed": "viewed",
    "download.succeeded": "downloaded",
    "payment.processed": "payment",
    "invoice.paid": "paid",
    "invoice.voided": "voided",
}
# What the timeline says of entries whose own text names the invoice by its id (the downloads
# app writes them, knowing nothing of invoices): the page is the invoice's already.
LINK_DESCRIPTIONS = {
    "download.viewed": "Viewed through a link",
    "download.succeeded": "Downloaded through a link",
}
# An email that failed without a delivery event to say why (a failure at send time has one).
UNEXPLAINED_FAILURE = ["", DeliveryStatus.SUPPRESSED]
TYPES = [
    *ENTRY_TYPES.values(),
    *(status for status in DeliveryStatus.values if status not in UNEXPLAINED_FAILURE),
    "not_sent",
]


# What became of the client's latest email about an invoice: its provider's last word, else
# where the outbox has it (queued or sending, sent, failed).
DELIVERY_STATES = [
    "queued", "sent", "failed", *(status for status in DeliveryStatus.values if status)
]  # fmt: skip


def latest_delivery_status() -> Subquery:
    """An invoice's DELIVERY_STATES value (None when no email about it went to its client), for
    `Invoice.objects.annotate()`: lists show it and filter by it."""
    status = EmailLog.Status
    latest = _client_emails(Cast(OuterRef("pk"), CharField())).order_by("-id")
    state = Case(
        When(~Q(delivery_status=""), then=F("delivery_status")),
        When(status=status.SENT, then=Value("sent")),
        When(status=status.FAILED, then=Value("failed")),
        default=Value("queued"),
    )
    return Subquery(latest.annotate(state=state).values("state")[:1])


@dataclasses.dataclass(frozen=True, order=True)
class Position:
    """Where an item stands: its time, then its source's rank, then its id in that source."""

    at: datetime.datetime
    source: int
    id: int

    def text(self) -> str:
        return f"{self.at.isoformat()}|{self.source}|{self.id}"

    @classmethod
    def parse(cls, text: str) -> "Position":
        """Raises ValueError for text that no position wrote."""
        at, source, pk = text.split("|")
        moment = datetime.datetime.fromisoformat(at)
        if moment.tzinfo is None or not source.isdigit() or not pk.isdigit():
            raise ValueError(text)
        return cls(moment, int(source), int(pk))


class Moment(Func):
    """A moment as every source's can be compared: SQLite keeps a time as text, those the
    database wrote (`Now()`) to the millisecond and those Django wrote to the microsecond, so
    the same instant is two different texts; there both sides are written the database's way."""

    output_field = DateTimeField()
    template = "%(expressions)s"

    def as_sqlite(self, compiler, connection, **extra):
        template = "STRFTIME('%%%%Y-%%%%m-%%%%d %%%%H:%%%%M:%%%%f', %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra)


def _beyond(position: Position, rank: int, *, forward: bool) -> Q:
    """Rows of the source ranked `rank` that come after `position` (before it, backwards)."""
    op = "gt" if forward else "lt"
    at = Moment(Value(position.at, DateTimeField()))
    beyond = Q(**{f"at__{op}": at})
    if rank == position.source:
        return beyond | Q(at=at, **{f"pk__{op}": position.id})
    if (rank > position.source) == forward:
        return beyond | Q(at=at)
    return beyond


def _item(kind: str, at, key: str, **fields) -> dict:
    item = dict.fromkeys(
        ["actor", "to", "ip_address", "user_agent", "amount", "method", "step", "reason"]
    )
    return {"id": key, "type": kind, "occurred_at": at, **item, **fields}


def _entries(invoice: Invoice) -> QuerySet:
    # Entries name their target's id as text: the payments' ids as text, in the same query.
    payments = Payment.objects.filter(invoice=invoice).values_list(Cast("pk", CharField()))
    own = Q(resource_type="invoice", resource_id=str(invoice.pk), action__in=list(ENTRY_TYPES))
    paid = Q(resource_type="payment", resource_id__in=payments, action="payment.processed")
    return AuditLog.objects.filter(own | paid).annotate(at=Moment("created_at"))


def _entry_item(entry: AuditLog) -> dict:
    metadata = entry.metadata
    amount = metadata.get("amount")
    return _item(
        ENTRY_TYPES[entry.action],
        entry.created_at,
        f"a{entry.pk}",
        actor=entry.user_email or None,
        to=metadata.get("to"),
        ip_address=entry.ip_address,
        user_agent=entry.user_agent or None,
        amount=None if amount is None else f"{Decimal(str(amount)):.2f}",
        method=metadata.get("method"),
        step=metadata.get("step"),
        description=LINK_DESCRIPTIONS.get(entry.action, entry.description),
    )


def _client_emails(resource_id) -> QuerySet:
    """Emails about an invoice to its client: sent on its owner's behalf (the owner's own
    notifications about it are not)."""
    return EmailLog.objects.filter(
        resource_type="invoice", resource_id=resource_id, on_behalf_of__isnull=False
    )


def _emails(invoice: Invoice) -> QuerySet:
    return _client_emails(str(invoice.pk))


def _delivery_events(invoice: Invoice) -> QuerySet:
    emails = _emails(invoice).values("pk")
    return EmailEvent.objects.filter(email__in=emails).annotate(at=Moment("occurred_at"))


def _delivery_item(event: EmailEvent) -> dict:
    label = DeliveryStatus(event.event_type).label
    description = f"{label.capitalize()}: {event.recipient}"
    return _item(
        event.event_type,
        event.occurred_at,
        f"d{event.pk}",
        to=event.recipient or None,
        reason=event.description or None,
        description=f"{description} ({event.description})" if event.description else description,
    )


def _unsent_emails(invoice: Invoice) -> QuerySet:
    failed = _emails(invoice).filter(
        status=EmailLog.Status.FAILED, delivery_status__in=UNEXPLAINED_FAILURE
    )
    return failed.annotate(at=Moment(Coalesce("claimed_at", "created_at")))


def _unsent_item(email: EmailLog) -> dict:
    reason = email.last_error or None
    return _item(
        "not_sent",
        email.at,
        f"e{email.pk}",
        to=email.to_email,
        reason=reason,
        description=f"Not sent to {email.to_email}" + (f": {reason}" if reason else ""),
    )


# Each source: its rank (breaking ties of time), its rows, and how one becomes an item.
SOURCES = [
    (0, _entries, _entry_item),
    (1, _delivery_events, _delivery_item),
    (2, _unsent_emails, _unsent_item),
]


@dataclasses.dataclass
class Page:
    items: list[dict]
    first: Position | None
    last: Position | None
    more_before: bool
    more_after: bool


def timeline_page(
    invoice: Invoice, *, size: int, after: Position | None = None, before: Position | None = None
) -> Page:
    """`size` items after `after` (or from the start), or the `size` items just before
    `before`; each source reads at most size + 1 rows by its own index and order."""
    backwards = before is not None
    rows = []
    for rank, select, make in SOURCES:
        queryset = select(invoice)
        if before or after:
            queryset = queryset.filter(_beyond(before or after, rank, forward=not backwards))
        queryset = queryset.order_by("-at", "-pk") if backwards else queryset.order_by("at", "pk")
        rows += [(Position(row.at, rank, row.pk), make, row) for row in queryset[: size + 1]]
    rows.sort(key=lambda found: found[0], reverse=backwards)
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    return Page(
        items=[make(row) for _, make, row in rows],
        first=rows[0][0] if rows else None,
        last=rows[-1][0] if rows else None,
        more_before=more if backwards else after is not None,
        more_after=backwards or more,
    )
