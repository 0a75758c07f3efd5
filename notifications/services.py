"""In-app notifications: one entry point, `notify()`, called by the domain's events (never by
signals), and the reads of their owner. The unread count is a COUNT over a partial index of
unread rows: always right, and as fast as a cache read (bench/bench_notifications.py), so
nothing is cached."""

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import translation

from audit import services as audit
from audit.integrity import normalize_json
from emails import services as emails
from notifications import preferences, realtime, types
from notifications.models import Notification

ADMIN_MESSAGE = "admin_message"

# A channel another app sends (webhooks: types.WEBHOOK) -> how it sends a notification there.
_senders: dict[str, Callable[[Notification], object]] = {}


def register_sender(channel: str, send: Callable[[Notification], object]) -> None:
    """`send(notification)` runs in notify's transaction for each recipient who has the
    notification's type on `channel`. Called in the sending app's `ready()`."""
    if channel not in types.CHANNELS or channel in _senders:
        raise ImproperlyConfigured(f"Channel {channel!r} is unknown or has a sender already.")
    _senders[channel] = send


def notify(
    recipient,
    notification_type: str,
    *,
    params: dict | None = None,
    resource=None,
    actor=None,
    channels: tuple[str, ...] | None = None,
    as_chosen: bool = True,
) -> Notification:
    """Notify `recipient` of a registered type on its channels (or on `channels`, when given;
    and on the channels the user may opt into, such as webhooks), as often as the recipient
    chose (notifications/preferences.py; `as_chosen=False`: at once, for what they asked for
    themselves): the notification row (type and parameters; its text is rendered from them), in
    their feed unless they switched it off there, an email now or later in their digest, and
    what other apps' channels queue, all in the caller's transaction; the emails leave, and the
    feed's open pages are told, once it commits. The row is kept even when no channel takes
    it: it records what the recipient was told of. `resource`: a model instance or a (type, id)
    pair the notification is about."""
    kind = types.get(notification_type)
    asked = kind.channels if channels is None else tuple(channels)
    if types.IN_APP in asked:
        asked += (types.REALTIME,)
    if as_chosen:
        # And what the user may opt into; never for a critical type, which stays in the account.
        reach = asked if kind.critical else asked + types.OPT_IN
        wanted = preferences.frequencies(recipient, kind, reach)
    else:
        wanted = dict.fromkeys(asked, types.IMMEDIATE)
    email = wanted.get(types.EMAIL, types.OFF)
    resource_type, resource_id = _resource(resource)
    with transaction.atomic(savepoint=False):  # all or nothing, in the caller's transaction
        notification = Notification.objects.create(
            user=recipient,
            type=kind.name,
            params=normalize_json(params or {}),
            resource_type=resource_type,
            resource_id=resource_id,
            actor=actor,
            in_app=wanted.get(types.IN_APP, types.OFF) != types.OFF,
            digest=email if email in types.DIGESTS else "",
        )
        if email == types.IMMEDIATE:
            with translation.override(getattr(recipient, "language", None)):
                title, message = notification.title, notification.message
            emails.queue_email(
                kind.email_template,
                to=recipient.email,
                context={
                    "name": recipient.get_short_name(),
                    "title": title,
                    "message": message,
                    "event": kind.name,
                    **notification.params,
                },
                user=recipient,
                notification=notification,
                resource=(resource_type, resource_id) if resource_type else None,
                topic="" if kind.critical else kind.name,
            )
        for channel, send in _senders.items():
            if wanted.get(channel) == types.IMMEDIATE:
                send(notification)
    if notification.in_app:
        # Pushed live, or (the live push switched off) only the new unread count.
        live = wanted.get(types.REALTIME) == types.IMMEDIATE
        message = {"type": "notification.created" if live else "notification.counted"}
        realtime.push_after_commit(recipient.pk, {**message, "id": notification.pk})
    return notification


def _resource(resource) -> tuple[str, str]:
    if resource is None:
        return "", ""
    if isinstance(resource, tuple):
        return resource[0], str(resource[1])
    return resource._meta.model_name, str(resource.pk)


@transaction.atomic
def send_admin_message(
    users, *, title: str, message: str, send_email: bool = False, skipped: int = 0
) -> list[Notification]:
    """One notification (and email, if asked) per user; audited as one broadcast, with the
    number of selected users it `skipped` (the caller knows who can be reached)."""
    channels = (types.IN_APP, types.EMAIL) if send_email else (types.IN_APP,)
    sent = [
        notify(user, ADMIN_MESSAGE, params={"title": title, "message": message}, channels=channels)
        for user in users
    ]
    audit.log(
        "admin.notification_broadcast",
        metadata={"count": len(sent), "title": title, "emailed": send_email, "skipped": skipped},
    )
    return sent


@transaction.atomic
def send_test_notification(user) -> Notification:
    notification = notify(
        user,
        ADMIN_MESSAGE,
        params={
            "title": "Test notification",
            "message": "Notifications reach you here.",
            "test": True,
        },
        channels=(types.IN_APP,),
        as_chosen=False,  # they asked for it: it shows whatever they chose for staff's messages
    )
    audit.log("notification.test", target=("notification", notification.pk), actor=user)
    return notification


def mark_read(notification: Notification) -> Notification:
    """Read, and the reader's connections told (with the new unread count)."""
    if Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(read_at=Now()):
        message = {"type": "notification.read", "ids": [notification.pk]}
        realtime.push_after_commit(notification.user_id, message)
    notification.refresh_from_db(fields=["read_at"])
    return notification


def mark_all_read(user) -> int:
    """One UPDATE; returns how many were unread."""
    unread = Notification.objects.filter(user=user, read_at__isnull=True, in_app=True)
    if count := unread.update(read_at=Now()):
        realtime.push_after_commit(user.pk, {"type": "notification.read", "ids": None})
    return count


_UNREAD_SQL = (
    f"SELECT count(*) FROM {Notification._meta.db_table} "  # noqa: S608 (a table name)
    "WHERE user_id = %s AND read_at IS NULL AND in_app"
)


def unread_count(user) -> int:
    """One COUNT over the partial index of unread rows, in plain SQL: the ORM's query building
    would cost more than the count (bench/bench_notifications.py)."""
    with connection.cursor() as cursor:
        cursor.execute(_UNREAD_SQL, [user.pk])
        return cursor.fetchone()[0]
