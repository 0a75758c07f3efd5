"""Billing's domain events. Each is one function: its audit entry (holding the field diffs of
the change, recorded in the service's transaction), then what its people are told (a
notification, emails), stored in the same transaction; subscribers hear of it after commit.
A service changes its rows, then records its event (see services.py)."""

import datetime

from django.utils import translation
from django.utils.translation import gettext, ngettext

from audit.registry import domain_event
from audit.services import record_event
from emails.services import queue_email
from invoicegen.billing.models import BusinessProfile, Invoice, Payment, Subscription
from invoicegen.billing.money import format_day, format_money
from invoicegen.core.api import decimal_text
from notifications.services import notify
from webhooks.services import send_event


def invoice_params(invoice: Invoice) -> dict:
    """What its owner is told of it (the total as they write amounts)."""
    with translation.override(invoice.user.language):
        total = format_money(invoice.total, invoice.currency)
    return {
        "invoice_id": invoice.pk,
        "invoice_number": invoice.number,
        "client_name": invoice.client_name,
        "total": total,
    }


def invoice_data(invoice: Invoice) -> dict:
    """What the webhooks of its events carry."""
    return {
        "id": invoice.pk,
        "number": invoice.number,
        "status": invoice.status,
        "currency": invoice.currency,
        "total": decimal_text(invoice.total),
        "amount_paid": decimal_text(invoice.amount_paid),
        "balance_due": decimal_text(invoice.balance_due),
        "due_date": invoice.due_date,
        "client_name": invoice.client_name,
        "client_email": invoice.client_email,
        "finalized_at": invoice.finalized_at,
        "sent_at": invoice.sent_at,
        "paid_at": invoice.paid_at,
    }


def subscription_data(subscription: Subscription) -> dict:
    return {
        "id": subscription.pk,
        "plan": subscription.plan,
        "status": subscription.status,
        "current_period_start": subscription.current_period_start,
        "current_period_end": subscription.current_period_end,
    }


# The webhook event types (webhooks/types.py): {name: what it means}. Registered in ready().
WEBHOOK_EVENTS = {
    "invoice.finalized": "An invoice was finalized: numbered, and no longer editable.",
    "invoice.sent": "An invoice was emailed to its client.",
    "invoice.viewed": "The client opened a link to an invoice for the first time.",
    "invoice.paid": "An invoice was paid in full.",
    "invoice.voided": "An invoice was voided.",
    "payment.received": "A payment was recorded on an invoice.",
    "email.bounced": "An invoice's email to its client bounced.",
    "email.complained": "An invoice's email was marked as spam by its client.",
    "subscription.activated": "The account's subscription became active.",
    "subscription.cancelled": "The account's subscription was cancelled.",
    "subscription.renewed": "The account's subscription was renewed for a period.",
    "subscription.expired": "The account's subscription expired.",
}


@domain_event("invoice.created", "{actor} created {target}")
def invoice_created(invoice: Invoice, *, actor) -> None:
    record_event("invoice.created", target=invoice, actor=actor, params=invoice_params(invoice))


@domain_event("invoice.updated", "{actor} updated {target}")
def invoice_updated(invoice: Invoice, *, actor) -> None:
    record_event("invoice.updated", target=invoice, actor=actor)


@domain_event("invoice.deleted", "{actor} deleted {target}")
def invoice_deleted(invoice: Invoice, *, actor) -> None:
    record_event("invoice.deleted", target=invoice, actor=actor, params=invoice_params(invoice))


@domain_event("invoice.finalized", "{actor} finalized {target}")
def invoice_finalized(invoice: Invoice, *, actor) -> None:
    params = invoice_params(invoice)
    record_event("invoice.finalized", target=invoice, actor=actor, params=params)
    notify(invoice.user, "invoice_finalized", params=params, resource=invoice, actor=actor)
    send_event(invoice.user, "invoice.finalized", invoice_data(invoice))


REMINDERS = "invoice_reminder"  # the topic a client may unsubscribe from (emails/unsubscribe.py)


def _email_client(
    invoice: Invoice, template: str, *, to: str, context: dict, topic: str = ""
) -> None:
    """An email to the invoice's client, from its issuer's business name, replies to its owner,
    in the client's language, its amounts and dates as they are written there."""
    issuer = invoice.issuer.get("name") or invoice.user.get_full_name()  # the business's name
    with translation.override(invoice.client_language):
        written = {
            "total": format_money(invoice.total, invoice.currency),
            "due_date": format_day(invoice.due_date),
        }
    queue_email(
        template,
        to=to,
        context={**context, **written, "issuer": issuer},
        language=invoice.client_language,
        resource=("invoice", invoice.pk),
        on_behalf_of=invoice.user,
        sender_name=issuer,
        topic=topic,
    )


@domain_event("invoice.sent", "{actor} sent {target} to {to}")
def invoice_sent(invoice: Invoice, *, to: str, actor) -> None:
    """The owner is told; the client gets the invoice, with a download link made when the
    email is sent (links.make_client_download_link)."""
    params = {**invoice_params(invoice), "to": to}
    record_event("invoice.sent", target=invoice, actor=actor, params=params)
    notify(invoice.user, "invoice_sent", params=params, resource=invoice, actor=actor)
    send_event(invoice.user, "invoice.sent", {**invoice_data(invoice), "sent_to": to})
    _email_client(invoice, "invoice_notification_client", to=to, context=params)


def when_due(invoice: Invoice, today: datetime.date) -> str:
    """How due the invoice is on `today`, the day a reminder leaves (a step's own day unless
    the step was missed): "due in 3 days", "due today", "overdue by 7 days"."""
    days = (invoice.due_date - today).days
    if days > 0:
        return ngettext("due in %(count)d day", "due in %(count)d days", days) % {"count": days}
    if days < 0:
        return ngettext("overdue by %(count)d day", "overdue by %(count)d days", -days) % {
            "count": -days
        }
    return gettext("due today")


def _reminder_params(invoice: Invoice, *, to: str, step: int, skipped: list[int]) -> dict:
    return {**invoice_params(invoice), "to": to, "step": step, "skipped_steps": skipped}


@domain_event("invoice.reminder_sent", "Reminder of {target} sent to {to} ({step:+d} days)")
def invoice_reminder_sent(
    invoice: Invoice, *, to: str, step: int, skipped: list[int], today: datetime.date, actor
) -> None:
    """The client is reminded of the balance due at `to` (where the invoice was last sent),
    with a download link made when the email is sent (links.make_reminder_download_link);
    `step` is the schedule's day (from the due date) and `skipped` the earlier ones missed."""
    params = _reminder_params(invoice, to=to, step=step, skipped=skipped)
    record_event("invoice.reminder_sent", target=invoice, actor=actor, params=params)
    with translation.override(invoice.client_language):
        balance_due = format_money(invoice.balance_due, invoice.currency)
        context = {**params, "balance_due": balance_due, "when_due": when_due(invoice, today)}
    _email_client(invoice, "invoice_reminder", to=to, context=context, topic=REMINDERS)


@domain_event(
    "invoice.reminder_suppressed",
    "Reminder of {target} not sent: {to} is suppressed ({step:+d} days)",
)
def invoice_reminder_suppressed(
    invoice: Invoice, *, to: str, step: int, skipped: list[int], actor
) -> None:
    """The step is done without an email: `to` is on the suppression list (it bounced,
    complained or unsubscribed). The owner is not told at each step: an invoice email's first
    bounce or complaint has told them once (invoice_delivery_failed)."""
    params = _reminder_params(invoice, to=to, step=step, skipped=skipped)
    record_event("invoice.reminder_suppressed", target=invoice, actor=actor, params=params)


@domain_event("invoice.send_refused", "Sending {target} refused: {reason}", security=True)
def invoice_send_refused(invoice: Invoice, *, to: str, reason: str, actor) -> None:
    params = {"reason": reason, "to": to}
    record_event("invoice.send_refused", target=invoice, actor=actor, params=params, success=False)


@domain_event("invoice.delivery_failed", "{target} to {to} {problem}: {reason}")
def invoice_delivery_failed(invoice_id: str, *, to: str, problem: str, description: str) -> None:
    """The email of an invoice to its client bounced or drew a complaint (its provider said
    so, or the receiving server refused it): the owner is told, once an email."""
    invoice = Invoice.objects.filter(pk=invoice_id).select_related("user").first()
    if invoice is None:  # deleted since
        return
    reason = description or problem
    params = {**invoice_params(invoice), "to": to, "problem": problem, "reason": reason}
    record_event("invoice.delivery_failed", target=invoice, actor=None, params=params)
    notify(invoice.user, "invoice_delivery_failed", params=params, resource=invoice)
    data = {"invoice": invoice_data(invoice), "to": to, "reason": reason}
    send_event(invoice.user, f"email.{problem}", data)


@domain_event("invoice.paid", "{target} paid in full")
def invoice_paid(invoice: Invoice, *, actor) -> None:
    params = invoice_params(invoice)
    record_event("invoice.paid", target=invoice, actor=actor, params=params)
    notify(invoice.user, "invoice_paid", params=params, resource=invoice, actor=actor)
    send_event(invoice.user, "invoice.paid", invoice_data(invoice))


def invoice_first_viewed(invoice: Invoice) -> None:
    """The client opened a link to the invoice for the first time. The view's entry is the
    link's own (`download.viewed`, downloads/services.py): the owner is only told."""
    notify(invoice.user, "invoice_viewed", params=invoice_params(invoice), resource=invoice)
    send_event(invoice.user, "invoice.viewed", invoice_data(invoice))


def invoice_first_downloaded(invoice: Invoice) -> None:
    """The client downloaded the invoice for the first time (entry: `download.succeeded`)."""
    notify(invoice.user, "invoice_downloaded", params=invoice_params(invoice), resource=invoice)


@domain_event("invoice.voided", "{actor} voided {target}")
def invoice_voided(invoice: Invoice, *, actor) -> None:
    record_event("invoice.voided", target=invoice, actor=actor)
    send_event(invoice.user, "invoice.voided", invoice_data(invoice))


@domain_event("business_profile.updated", "{actor} updated the business profile {target}")
def business_profile_updated(profile: BusinessProfile, *, actor) -> None:
    record_event("business_profile.updated", target=profile, actor=actor)


@domain_event("payment.processed", "{target} of {amount} recorded")
def payment_processed(payment: Payment, *, actor) -> None:
    params = {"amount": payment.amount, "method": payment.method, "invoice_id": payment.invoice_id}
    record_event("payment.processed", target=payment, actor=actor, params=params)
    invoice = payment.invoice
    data = {
        "id": payment.pk,
        "amount": decimal_text(payment.amount),
        "currency": invoice.currency,
        "method": payment.method,
        "invoice": invoice_data(invoice),
    }
    send_event(invoice.user, "payment.received", data)


@domain_event("payment.failed", "Payment on {target} refused: {reason}")
def payment_failed(invoice: Invoice, *, amount, method: str, reason: str, actor) -> None:
    params = {"amount": amount, "method": method, "reason": reason}
    record_event("payment.failed", target=invoice, actor=actor, params=params, success=False)


def _subscription_event(name: str, subscription: Subscription, *, actor, notify_as: str = ""):
    end = subscription.current_period_end
    with translation.override(subscription.user.language):  # as its owner writes days
        params = {"plan": subscription.plan, "period_end": end, "period_ends": format_day(end)}
    record_event(name, target=subscription, actor=actor, params=params)
    send_event(subscription.user, name, subscription_data(subscription))
    if notify_as:
        notify(subscription.user, notify_as, params=params, resource=subscription, actor=actor)


@domain_event("subscription.activated", "{actor} activated {target}")
def subscription_activated(subscription: Subscription, *, actor) -> None:
    _subscription_event(
        "subscription.activated", subscription, actor=actor, notify_as="subscription_activated"
    )


@domain_event("subscription.cancelled", "{actor} cancelled {target}")
def subscription_cancelled(subscription: Subscription, *, actor) -> None:
    _subscription_event(
        "subscription.cancelled", subscription, actor=actor, notify_as="subscription_cancelled"
    )


@domain_event("subscription.renewed", "{target} renewed")
def subscription_renewed(subscription: Subscription, *, actor) -> None:
    _subscription_event(
        "subscription.renewed", subscription, actor=actor, notify_as="subscription_renewed"
    )


@domain_event("subscription.expired", "{target} expired")
def subscription_expired(subscription: Subscription, *, actor) -> None:
    _subscription_event("subscription.expired", subscription, actor=actor)
