"""In-app notifications: created by the domain services (explicitly, never by signals), read
by their owner. The unread count is a COUNT over a partial index of unread rows: always right,
and as fast as a cache read (bench/bench_notifications.py), so nothing is cached."""

from django.db import connection, transaction
from django.db.models.functions import Now

from audit import services as audit
from audit.integrity import normalize_json
from emails import services as emails
from notifications.models import Notification

Type = Notification.Type

# The email that goes with a notification, when one is asked for.
EMAIL_TEMPLATES = {
    Type.INVOICE_FINALIZED: "invoice_notification_user",
    Type.INVOICE_SENT: "invoice_notification_user",
    Type.INVOICE_PAID: "invoice_notification_user",
    Type.SUBSCRIPTION_ACTIVATED: "subscription_notification",
    Type.SUBSCRIPTION_CANCELLED: "subscription_notification",
    Type.SUBSCRIPTION_RENEWED: "subscription_notification",
    Type.ACCOUNT_ACTIVITY: "admin_message",
    Type.ADMIN_MESSAGE: "admin_message",
}


@transaction.atomic
def create_notification(
    user_id: int,
    notification_type: str,
    title: str,
    message: str = "",
    resource_type: str | None = None,
    resource_id=None,
    metadata: dict | None = None,
    send_email: bool = False,
) -> Notification:
    notification = Notification.objects.create(
        user_id=user_id,
        type=Type(notification_type),
        title=title[:200],
        message=message,
        resource_type=resource_type or "",
        resource_id="" if resource_id is None else str(resource_id),
        metadata=normalize_json(metadata or {}),
    )
    template = EMAIL_TEMPLATES.get(notification.type)
    if send_email and template:
        user = notification.user
        emails.queue_email(
            template,
            to=user.email,
            context={
                "name": user.get_short_name(),
                "title": notification.title,
                "message": notification.message,
                **notification.metadata,
            },
            user=user,
            notification=notification,
            resource=(notification.resource_type, notification.resource_id)
            if notification.resource_type
            else None,
        )
    return notification


def _notify_invoice(
    invoice, notification_type: str, title: str, message: str, *, client_email: str | None = None
) -> Notification:
    """The owner's notification and email about an invoice, and the client's email if given
    (the emails are EmailService's)."""
    notification = create_notification(
        invoice.user_id,
        notification_type,
        title,
        message,
        resource_type="invoice",
        resource_id=invoice.pk,
        metadata={"invoice_number": invoice.number, "total": f"{invoice.total} {invoice.currency}"},
    )
    emails.send_invoice_notification(
        invoice.user, invoice, notification_type, client_email, notification=notification
    )
    return notification


def notify_invoice_finalized(invoice) -> Notification:
    return _notify_invoice(
        invoice,
        Type.INVOICE_FINALIZED,
        f"Invoice {invoice.number} finalized",
        "It is ready to send to your client.",
    )


def notify_invoice_sent(invoice, *, to: str | None = None) -> Notification:
    """Also emails the client, with a link to download the invoice."""
    return _notify_invoice(
        invoice,
        Type.INVOICE_SENT,
        f"Invoice {invoice.number} sent",
        f"Sent to {to or invoice.client_email}.",
        client_email=to or invoice.client_email,
    )


def notify_invoice_paid(invoice) -> Notification:
    return _notify_invoice(
        invoice,
        Type.INVOICE_PAID,
        f"Invoice {invoice.number} paid",
        f"{invoice.client_name} paid {invoice.total} {invoice.currency} in full.",
    )


_SUBSCRIPTION_TITLES = {
    Type.SUBSCRIPTION_ACTIVATED: "Your {plan} subscription is active",
    Type.SUBSCRIPTION_CANCELLED: "Your {plan} subscription is cancelled",
    Type.SUBSCRIPTION_RENEWED: "Your {plan} subscription is renewed",
}


def notify_subscription(subscription, notification_type: str) -> Notification:
    end = subscription.current_period_end
    return create_notification(
        subscription.user_id,
        notification_type,
        _SUBSCRIPTION_TITLES[notification_type].format(plan=subscription.plan),
        f"Current period ends {end:%Y-%m-%d}.",
        resource_type="subscription",
        resource_id=subscription.pk,
        metadata={"plan": subscription.plan, "period_end": end},
        send_email=True,
    )


def notify_password_reset_requested(user) -> Notification:
    return create_notification(
        user.pk,
        Type.PASSWORD_RESET_REQUESTED,
        "Password reset requested",
        "A link to choose a new password was emailed to you. Not you? Ignore it.",
        resource_type="user",
        resource_id=user.pk,
    )


def notify_account_activity(user, *, title: str, message: str = "", send_email: bool = False):
    return create_notification(
        user.pk,
        Type.ACCOUNT_ACTIVITY,
        title,
        message,
        resource_type="user",
        resource_id=user.pk,
        send_email=send_email,
    )


@transaction.atomic
def send_admin_message(
    users, *, title: str, message: str, send_email: bool = False
) -> list[Notification]:
    """One notification (and email, if asked) per user; audited as one broadcast."""
    sent = [
        create_notification(user.pk, Type.ADMIN_MESSAGE, title, message, send_email=send_email)
        for user in users
    ]
    audit.log(
        "admin.notification_broadcast",
        metadata={"count": len(sent), "title": title, "emailed": send_email},
    )
    return sent


@transaction.atomic
def send_test_notification(user) -> Notification:
    notification = create_notification(
        user.pk,
        Type.ADMIN_MESSAGE,
        "Test notification",
        "Notifications reach you here.",
        metadata={"test": True},
    )
    audit.log("notification.test", target=("notification", notification.pk), actor=user)
    return notification


def mark_read(notification: Notification) -> Notification:
    Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=Now())
    notification.refresh_from_db(fields=["read_at"])
    return notification


def mark_all_read(user) -> int:
    """One UPDATE; returns how many were unread."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=Now())


_UNREAD_SQL = (
    f"SELECT count(*) FROM {Notification._meta.db_table} "  # noqa: S608 (a table name)
    "WHERE user_id = %s AND read_at IS NULL"
)


def unread_count(user) -> int:
    """One COUNT over the partial index of unread rows, in plain SQL: the ORM's query building
    would cost more than the count (bench/bench_notifications.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_UNREAD_SQL, [user.pk])
        return cursor.fetchone()[0]


class NotificationService:
    """The seed's calls, for callers written against it."""

    create_notification = staticmethod(create_notification)
    notify_invoice_finalized = staticmethod(notify_invoice_finalized)
    notify_invoice_sent = staticmethod(notify_invoice_sent)
    notify_invoice_paid = staticmethod(notify_invoice_paid)
    notify_subscription = staticmethod(notify_subscription)
    notify_password_reset_requested = staticmethod(notify_password_reset_requested)
    notify_account_activity = staticmethod(notify_account_activity)
    send_admin_message = staticmethod(send_admin_message)
    send_test_notification = staticmethod(send_test_notification)
    mark_read = staticmethod(mark_read)
    mark_all_read = staticmethod(mark_all_read)
    unread_count = staticmethod(unread_count)
