"""The invoice and subscription lifecycles: every state change of billing happens here. Each
service changes its rows, then records its domain event (events.py), in one transaction whose
tracked changes the event names (audit.tracking.service_transaction)."""

import calendar
import datetime
import zoneinfo
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.translation import gettext_noop

from audit.tracking import service_transaction
from downloads import services as downloads
from emails import delivery, unsubscribe
from emails import services as emails
from invoicegen.billing import events
from invoicegen.billing.models import (
    EARLIEST_REMINDER_DAY,
    LATEST_REMINDER_DAY,
    BusinessProfile,
    Invoice,
    InvoiceItem,
    InvoiceReminder,
    InvoiceSequence,
    Payment,
    Subscription,
    default_reminder_days,
)
from invoicegen.billing.money import smallest_unit
from invoicegen.core.exceptions import ConflictError, QuotaExceeded

MAX_AMOUNT = Decimal("999999999999.99")  # what DecimalField(max_digits=14, decimal_places=2) holds
DAILY_EMAIL_QUOTA = {
    Subscription.Plan.FREE: 50,
    Subscription.Plan.PRO: 1_000,
    Subscription.Plan.BUSINESS: 10_000,
}


def _allocate_number(user, year: int) -> int:
    InvoiceSequence.objects.bulk_create(
        [InvoiceSequence(user=user, year=year)], ignore_conflicts=True
    )
    sequence = InvoiceSequence.objects.select_for_update().get(user=user, year=year)
    sequence.last_value += 1
    sequence.save(update_fields=["last_value"])
    return sequence.last_value


def _item_rows(items: list[dict], currency: str) -> list[InvoiceItem]:
    return [
        InvoiceItem(
            position=position,
            description=item["description"],
            quantity=item["quantity"],
            unit_price=item["unit_price"],
            amount=(item["quantity"] * item["unit_price"]).quantize(
                smallest_unit(currency), ROUND_HALF_UP
            ),
        )
        for position, item in enumerate(items)
    ]


def _save_items(invoice: Invoice, rows: list[InvoiceItem]) -> None:
    for row in rows:
        row.invoice = invoice
    InvoiceItem.objects.bulk_create(rows)


def _set_totals(invoice: Invoice, rows: list[InvoiceItem] | None = None) -> None:
    """The subtotal of the lines (`rows`, or the invoice's own), the tax on it and the total."""
    if rows is not None:
        invoice.subtotal = sum((row.amount for row in rows), Decimal("0.00"))
    tax = invoice.subtotal * Decimal(invoice.tax_rate) / 100
    invoice.tax_total = tax.quantize(smallest_unit(invoice.currency), ROUND_HALF_UP)
    invoice.total = invoice.subtotal + invoice.tax_total
    if invoice.total > MAX_AMOUNT:  # amounts are never negative, so this bounds every line too
        raise ValidationError({"items": [f"The invoice total cannot exceed {MAX_AMOUNT}."]})


def _locked(invoice: Invoice) -> Invoice:
    """The invoice re-read under a row lock: two requests changing it run one after the other."""
    return Invoice.objects.select_for_update().get(pk=invoice.pk)


def _require_status(invoice: Invoice, *allowed: str, action: str) -> None:
    if invoice.status not in allowed:
        raise ConflictError(f"Cannot {action} an invoice that is {invoice.status}.")


@service_transaction
def create_invoice(
    user,
    *,
    client_name: str,
    client_email: str,
    due_date: datetime.date,
    items: list[dict],
    currency: str = "USD",
    client_address: str = "",
    tax_rate: Decimal = Decimal("0.00"),
    notes: str | None = None,
    reminders_enabled: bool = True,
    client_language: str = "",
    actor=None,
) -> Invoice:
    """A draft. Its notes, unless given, are the issuer's default notes and terms; the client
    reads it in `client_language`, by default the issuer's."""
    if notes is None:
        profile = BusinessProfile.objects.filter(user=user).only("notes").first()
        notes = profile.notes if profile else ""
    year = timezone.localdate().year
    sequence = _allocate_number(user, year)
    rows = _item_rows(items, currency)
    invoice = Invoice(
        user=user,
        year=year,
        sequence=sequence,
        number=f"INV-{year}-{sequence:03d}",
        client_name=client_name,
        client_email=client_email,
        client_address=client_address,
        currency=currency,
        due_date=due_date,
        tax_rate=tax_rate,
        notes=notes,
        reminders_enabled=reminders_enabled,
        client_language=client_language or getattr(user, "language", "") or "en",
    )
    _set_totals(invoice, rows)
    invoice.save(force_insert=True)
    _save_items(invoice, rows)
    events.invoice_created(invoice, actor=actor)
    return invoice


# Reminders can be switched on or off while the invoice may still be reminded of.
REMINDABLE = (Invoice.Status.DRAFT, Invoice.Status.FINALIZED, Invoice.Status.SENT)


@service_transaction
def update_invoice(invoice: Invoice, *, actor=None, **changes) -> Invoice:
    """Change a draft's fields; `items`, when given, replaces all of its lines. An issued
    invoice keeps its content: only `reminders_enabled` may change, alone, until it is paid
    or void."""
    invoice = _locked(invoice)
    if changes.keys() == {"reminders_enabled"}:
        _require_status(invoice, *REMINDABLE, action="change the reminders of")
    else:
        _require_status(invoice, Invoice.Status.DRAFT, action="edit")
    items = changes.pop("items", None)
    for field, value in changes.items():
        setattr(invoice, field, value)
    if invoice.status == Invoice.Status.DRAFT:
        rows = None if items is None else _item_rows(items, invoice.currency)
        _set_totals(invoice, rows)
        if rows is not None:
            invoice.items.all().delete()
            _save_items(invoice, rows)
    invoice.save()
    events.invoice_updated(invoice, actor=actor)
    return invoice


@service_transaction
def delete_draft_invoice(invoice: Invoice, *, actor=None) -> None:
    """Delete a draft, keeping the year's numbers gap-free: the drafts numbered after it move
    down one and the counter steps back. A draft with an issued invoice after it cannot go
    (409): that invoice's number is out, and the deleted one would be missing before it."""
    InvoiceSequence.objects.select_for_update().get(user_id=invoice.user_id, year=invoice.year)
    invoice = _locked(invoice)
    _require_status(invoice, Invoice.Status.DRAFT, action="delete")
    later = Invoice.objects.select_for_update().filter(
        user_id=invoice.user_id, year=invoice.year, sequence__gt=invoice.sequence
    )
    later = list(later.order_by("sequence"))
    if issued := [other for other in later if other.status != Invoice.Status.DRAFT]:
        raise ConflictError(
            f"Cannot delete {invoice.number}: {issued[0].number} was issued after it, and "
            "the numbers of a year have no gaps. Edit the draft instead."
        )
    invoice_id = invoice.pk
    invoice.delete()  # its lines go with it, each with its own entry
    for draft in later:  # in ascending order, so no two share a number at any moment
        draft.sequence -= 1
        draft.number = f"INV-{draft.year}-{draft.sequence:03d}"
        draft.save(update_fields=["sequence", "number", "updated_at"])
    InvoiceSequence.objects.filter(user_id=invoice.user_id, year=invoice.year).update(
        last_value=F("last_value") - 1
    )
    invoice.pk = invoice_id  # the event names the invoice that was deleted
    events.invoice_deleted(invoice, actor=actor)


@service_transaction
def finalize_invoice(invoice: Invoice, *, actor=None) -> Invoice:
    invoice = _locked(invoice)
    _require_status(invoice, Invoice.Status.DRAFT, action="finalize")
    if not invoice.items.exists():
        raise ValidationError({"items": ["An invoice needs at least one item to be finalized."]})
    invoice.status = Invoice.Status.FINALIZED
    invoice.finalized_at = timezone.now()
    invoice.issuer = issuer_details(invoice.user)
    invoice.save(update_fields=["status", "finalized_at", "issuer", "updated_at"])
    events.invoice_finalized(invoice, actor=actor)
    return invoice


def issuer_details(user) -> dict:
    """What an invoice prints of its issuer: the business profile, or the account's name."""
    profile = BusinessProfile.objects.defer("logo").filter(user=user).first()
    profile = profile or BusinessProfile(user=user)
    return {
        "name": profile.legal_name or user.get_full_name(),
        "address": profile.address,
        "tax_id": profile.tax_id,
        "email": user.email,
        "payment_instructions": profile.payment_instructions,
    }


def _save_users_row(row, *, conflict: str) -> None:
    """Save a row a user has one of; a concurrent request that made it first is a 409."""
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError as error:
        raise ConflictError(conflict) from error


def business_profile_of(user) -> BusinessProfile:
    """The user's profile, or an empty one not yet saved."""
    return BusinessProfile.objects.filter(user=user).first() or BusinessProfile(user=user)


@service_transaction
def update_business_profile(user, *, actor=None, **changes) -> BusinessProfile:
    """Set fields of the user's business profile, making it on the first change. `logo` is
    a PNG or JPEG image's bytes (the API checks them), or empty to remove it."""
    profile = BusinessProfile.objects.select_for_update().filter(user=user).first()
    profile = profile or BusinessProfile(user=user)
    for field, value in changes.items():
        setattr(profile, field, value)
    _save_users_row(profile, conflict="The business profile changed meanwhile: try again.")
    events.business_profile_updated(profile, actor=actor)
    return profile


def send_invoice(invoice: Invoice, *, to: str | None = None, actor=None) -> Invoice:
    """Email the invoice to its client. Only a verified account may make the platform email
    others, and no more than its plan's daily quota: a refusal is audited (outside the
    rolled-back transaction) as `invoice.send_refused`."""
    try:
        return _send_invoice(invoice, to=to, actor=actor)
    except (PermissionDenied, QuotaExceeded) as refusal:
        to = to or invoice.client_email
        events.invoice_send_refused(invoice, to=to, reason=str(refusal), actor=actor)
        raise


def daily_email_quota(user) -> int:
    """Emails to clients per day (UTC): the plan of a subscription still in its period, or
    the free plan's."""
    plan = (
        Subscription.objects.filter(user=user, current_period_end__gt=timezone.now())
        .exclude(status=Subscription.Status.EXPIRED)
        .values_list("plan", flat=True)
        .first()
    )
    return DAILY_EMAIL_QUOTA[plan or Subscription.Plan.FREE]


def _check_may_email_clients(user) -> None:
    if not user.email_verified:
        raise PermissionDenied("Verify your email address before sending invoices by email.")
    quota = daily_email_quota(user)
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    if emails.count_sent_on_behalf(user, since=today) >= quota:
        raise QuotaExceeded(
            f"Your plan sends at most {quota} emails to clients a day; the limit resets at "
            "midnight UTC.",
            limit=quota,
            until=today + datetime.timedelta(days=1),
        )


@service_transaction
def _send_invoice(invoice: Invoice, *, to: str | None, actor) -> Invoice:
    invoice = _locked(invoice)
    _require_status(invoice, Invoice.Status.FINALIZED, Invoice.Status.SENT, action="send")
    # One send of the account's at a time, so that two cannot both take the last email left.
    user = get_user_model().objects.select_for_update(no_key=True).get(pk=invoice.user_id)
    _check_may_email_clients(user)
    invoice.status = Invoice.Status.SENT
    invoice.sent_at = timezone.now()
    invoice.sent_to = to or invoice.client_email
    invoice.save(update_fields=["status", "sent_at", "sent_to", "updated_at"])
    events.invoice_sent(invoice, to=invoice.sent_to, actor=actor)
    return invoice


# Stored in English with the link, shown in the client's language (a message of the catalogs).
VOIDED_LINK = gettext_noop("This invoice was voided by its issuer: it is no longer due.")


def void_refusal(invoice: Invoice) -> str | None:
    """Why void_invoice() would refuse the invoice as it is now, or None if it would void it:
    only an issued invoice (finalized or sent) with no payment; a draft is deleted instead."""
    voidable = (Invoice.Status.FINALIZED, Invoice.Status.SENT)
    if invoice.status not in voidable:
        return f"Cannot void an invoice that is {invoice.status}."
    if invoice.amount_paid:
        return "Cannot void an invoice that has payments."
    return None


@service_transaction
def void_invoice(invoice: Invoice, *, actor=None) -> Invoice:
    """Void an issued invoice (void_refusal() says which) and withdraw every download link to
    it, in the same transaction."""
    invoice = _locked(invoice)
    if refusal := void_refusal(invoice):
        raise ConflictError(refusal)
    invoice.status = Invoice.Status.VOID
    invoice.save(update_fields=["status", "updated_at"])
    downloads.revoke_resource_tokens("invoice", invoice.pk, reason=VOIDED_LINK)
    events.invoice_voided(invoice, actor=actor)
    return invoice


@transaction.atomic
def issue_download_link(invoice: Invoice, *, created_by, **options):
    """A link to an issued invoice's PDF (downloads.issue_download_token): a draft may still
    change and a void invoice is not due, so neither gets one. The invoice is locked, as
    void_invoice locks it: a void never misses a link made at the same moment."""
    invoice = _locked(invoice)
    _require_status(
        invoice,
        Invoice.Status.FINALIZED,
        Invoice.Status.SENT,
        Invoice.Status.PAID,
        action="make a download link to",
    )
    return downloads.issue_download_token("invoice", invoice.pk, created_by=created_by, **options)


def _count(invoice_id, counter: str, **on_first) -> tuple[Invoice, bool]:
    """Add one to the invoice's `counter`, and the first time (from 0) set `on_first` too:
    conditional UPDATEs, so racing requests lose no count and exactly one of them is the first.
    The counters are quiet (billing/apps.py): the entry is the link's own."""
    invoices = Invoice.objects.filter(pk=invoice_id)
    one_more = {counter: F(counter) + 1}
    first = bool(invoices.filter(**{counter: 0}).update(**one_more, **on_first))
    if not first:
        invoices.update(**one_more)
    return invoices.get(), first


@transaction.atomic
def record_invoice_view(invoice_id) -> Invoice:
    """A counted view of a link to the invoice (downloads.record_view); the owner is told of
    the first one."""
    invoice, first = _count(invoice_id, "view_count", first_viewed_at=Now())
    if first:
        events.invoice_first_viewed(invoice)
    return invoice


@transaction.atomic
def record_invoice_download(invoice_id) -> Invoice:
    """A download of the invoice through a link; the owner is told of the first one."""
    invoice, first = _count(invoice_id, "download_count")
    if first:
        events.invoice_first_downloaded(invoice)
    return invoice


def record_payment(invoice: Invoice, *, amount: Decimal, method: str, actor=None) -> Payment:
    """Record a payment; the invoice turns paid when its payments reach the total. A refused
    payment is audited as `payment.failed` (outside the rolled-back transaction)."""
    try:
        return _record_payment(invoice, amount=amount, method=method, actor=actor)
    except (ValidationError, ConflictError) as error:
        reason = "; ".join(getattr(error, "messages", None) or [str(error)])
        events.payment_failed(invoice, amount=amount, method=method, reason=reason, actor=actor)
        raise


@service_transaction
def _record_payment(invoice: Invoice, *, amount: Decimal, method: str, actor) -> Payment:
    invoice = _locked(invoice)
    _require_status(
        invoice, Invoice.Status.FINALIZED, Invoice.Status.SENT, action="record a payment on"
    )
    if amount > invoice.balance_due:
        raise ValidationError(
            {"amount": [f"Exceeds the balance due of {invoice.balance_due} {invoice.currency}."]}
        )
    payment = Payment.objects.create(invoice=invoice, amount=amount, method=method)
    invoice.amount_paid = invoice.payments.aggregate(paid=Sum("amount"))["paid"]
    fields = ["amount_paid", "updated_at"]
    if invoice.amount_paid == invoice.total:
        invoice.status = Invoice.Status.PAID
        invoice.paid_at = timezone.now()
        fields += ["status", "paid_at"]
    invoice.save(update_fields=fields)
    events.payment_processed(payment, actor=actor)
    if invoice.status == Invoice.Status.PAID:
        events.invoice_paid(invoice, actor=actor)
    return payment


def owners_timezone(user) -> datetime.tzinfo:
    """The time zone of the owner's days (reminders): theirs, UTC if it is unknown here."""
    try:
        return zoneinfo.ZoneInfo(user.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return datetime.UTC


def owners_today(user) -> datetime.date:
    return timezone.localdate(timezone=owners_timezone(user))


def reminder_days_of(user) -> list[int]:
    """The user's reminder schedule (their business profile's), or the default one."""
    profile = BusinessProfile.objects.filter(user=user).only("reminder_days").first()
    return profile.reminder_days if profile else default_reminder_days()


def _due_reminder_steps(invoice: Invoice, *, today: datetime.date) -> list[int]:
    """The steps of the owner's schedule whose day has come (`today`, the owner's) and that
    come after the last step done. A step on or before the day the invoice was sent is no
    reminder: the invoice's own email has just told the client."""
    sent_on = timezone.localdate(invoice.sent_at, owners_timezone(invoice.user))
    last_done = invoice.reminders.order_by("-days").values_list("days", flat=True).first()
    return sorted(
        days
        for days in reminder_days_of(invoice.user)
        if sent_on < invoice.due_date + datetime.timedelta(days=days) <= today
        and (last_done is None or days > last_done)
    )


@service_transaction
def remind_invoice(invoice: Invoice, *, actor=None) -> InvoiceReminder | None:
    """Remind the client of a sent invoice with a balance due and reminders on, when a step of
    its owner's schedule has come: the latest step due is sent, and earlier ones missed (the
    task did not run on their day) are recorded as skipped, so a client never gets several at
    once. The reminder goes to the address the invoice was last sent to; when that address is
    suppressed (it bounced, complained or unsubscribed), or its client unsubscribed from the
    owner's reminders, no email is queued and the step is
    done all the same, as suppressed, so that it is not tried again every day. The invoice is
    locked, as a payment or a void locks it, and each step's row is unique per invoice: two
    runs at once, or a retried one, do a step once. Returns the step's reminder (sent or
    suppressed), or None when nothing was due."""
    invoice = _locked(invoice)
    if (
        invoice.status != Invoice.Status.SENT
        or not invoice.reminders_enabled
        or invoice.balance_due <= 0
    ):
        return None
    today = owners_today(invoice.user)
    due = _due_reminder_steps(invoice, today=today)
    if not due:
        return None
    *missed, step = due
    outcome = InvoiceReminder.Outcome
    to = invoice.sent_to
    suppressed = delivery.is_suppressed(to) or unsubscribe.is_opted_out(
        to, events.REMINDERS, sender=invoice.user
    )
    skipped = [
        InvoiceReminder(invoice=invoice, days=days, outcome=outcome.SKIPPED) for days in missed
    ]
    reminder = InvoiceReminder(
        invoice=invoice, days=step, outcome=outcome.SUPPRESSED if suppressed else outcome.SENT
    )
    try:  # the unique rows first: a run that lost a race stops here, sending nothing
        with transaction.atomic():
            InvoiceReminder.objects.bulk_create([*skipped, reminder])
    except IntegrityError:
        return None
    if suppressed:
        events.invoice_reminder_suppressed(invoice, to=to, step=step, skipped=missed, actor=actor)
    else:
        events.invoice_reminder_sent(
            invoice, to=to, step=step, skipped=missed, today=today, actor=actor
        )
    return reminder


def send_due_reminders() -> int:
    """Send every reminder that is due (remind_invoice), each invoice in its own transaction;
    safe at any hour and when run twice at once. Returns how many were sent (a suppressed
    step is done but not sent)."""
    # A step is EARLIEST_REMINDER_DAY to LATEST_REMINDER_DAY from the due date, in a time zone
    # at most a day from UTC: invoices whose last possible step is over are not read again.
    today = timezone.localdate(timezone=datetime.UTC)
    candidates = Invoice.objects.filter(
        status=Invoice.Status.SENT,
        reminders_enabled=True,
        amount_paid__lt=F("total"),
        due_date__lte=today + datetime.timedelta(days=1 - EARLIEST_REMINDER_DAY),
        due_date__gte=today - datetime.timedelta(days=1 + LATEST_REMINDER_DAY),
    ).order_by("due_date", "pk")
    sent = 0
    for invoice in candidates.only("pk"):
        reminder = remind_invoice(invoice)
        sent += reminder is not None and reminder.outcome == InvoiceReminder.Outcome.SENT
    return sent


def add_month(moment: datetime.datetime) -> datetime.datetime:
    """The same day next month, or that month's last day (Jan 31 -> Feb 28)."""
    year, month = divmod(moment.month, 12)
    year, month = moment.year + year, month + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@service_transaction
def activate_subscription(user, *, plan: str, actor=None) -> Subscription:
    """Start a monthly period on `plan`; an active subscription must be cancelled first."""
    now = timezone.now()
    subscription = Subscription.objects.select_for_update().filter(user=user).first()
    subscription = subscription or Subscription(user=user)
    if subscription.pk and subscription.status == Subscription.Status.ACTIVE:
        raise ConflictError("The subscription is already active.")
    subscription.plan = plan
    subscription.status = Subscription.Status.ACTIVE
    subscription.current_period_start = now
    subscription.current_period_end = add_month(now)
    subscription.cancelled_at = None
    _save_users_row(subscription, conflict="The subscription is already active.")
    events.subscription_activated(subscription, actor=actor)
    return subscription


@service_transaction
def cancel_subscription(subscription: Subscription, *, actor=None) -> Subscription:
    """Stop renewals; the plan stays usable until the end of the paid period."""
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if subscription.status != Subscription.Status.ACTIVE:
        raise ConflictError(f"Cannot cancel a subscription that is {subscription.status}.")
    subscription.status = Subscription.Status.CANCELLED
    subscription.cancelled_at = timezone.now()
    subscription.save()
    events.subscription_cancelled(subscription, actor=actor)
    return subscription


@service_transaction
def renew_subscription(subscription: Subscription, *, actor=None) -> Subscription:
    """Add one month: after the current period, or from now if it has lapsed."""
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    now = timezone.now()
    if subscription.current_period_end <= now:
        subscription.current_period_start = now
        subscription.current_period_end = add_month(now)
    else:
        subscription.current_period_end = add_month(subscription.current_period_end)
    subscription.status = Subscription.Status.ACTIVE
    subscription.cancelled_at = None
    subscription.save()
    events.subscription_renewed(subscription, actor=actor)
    return subscription


@service_transaction
def expire_subscriptions(*, now: datetime.datetime | None = None) -> int:
    """Mark subscriptions whose period has ended as expired; returns how many."""
    now = now or timezone.now()
    due = Subscription.objects.select_for_update().filter(
        status__in=[Subscription.Status.ACTIVE, Subscription.Status.CANCELLED],
        current_period_end__lte=now,
    )
    expired = 0
    for subscription in due:
        subscription.status = Subscription.Status.EXPIRED
        subscription.save(update_fields=["status", "updated_at"])
        events.subscription_expired(subscription, actor=None)
        expired += 1
    return expired
