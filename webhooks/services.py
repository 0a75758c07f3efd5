"""Outgoing webhooks on core's outbox (invoicegen/core/outbox.py), on the Standard Webhooks
spec.

An event (`send_event`, called by the app whose event it is, in its transaction) becomes a
delivery row for each of the user's enabled endpoints that subscribe to it, sent once the
transaction commits. Each row keeps one `webhook-id` and one body for all its attempts; each
attempt is signed afresh (`webhook-timestamp` is its time) and logged with the answer. A 2xx
within WEBHOOK_TIMEOUT is success; anything else is retried on WEBHOOK_RETRY_SCHEDULE, with
jitter. An endpoint whose attempts have all failed for WEBHOOK_DISABLE_AFTER_DAYS is disabled,
and its owner told.
"""

import datetime
import json
import logging
import secrets
import time
from functools import partial
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit import services as audit
from invoicegen.core.exceptions import ConflictError
from invoicegen.core.outbox import Delivery, Outbox, jittered
from notifications.api.serializers import NotificationSerializer
from notifications.services import notify
from webhooks import sending, signing, types
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

DISABLED_NOTIFICATION = "webhook_endpoint_disabled"
NOTIFICATION_EVENT = "notification.created"
TEST_EVENT = "webhook.test"  # sent on request to one endpoint; no one subscribes to it


class EndpointDisabled(Exception):
    """The endpoint was disabled after the delivery was queued: it is not sent."""


class EndpointRefused(Exception):
    """The endpoint answered, but not with a 2xx."""


def shown_url(url: str) -> str:
    """The URL as audit entries and notifications show it: its scheme and host. Receivers put
    tokens in paths and query strings (`/services/T0/B0/<secret>`), which are left out."""
    parts = urlsplit(url)
    tail = "/…" if parts.path.strip("/") or parts.query else "/"
    return f"{parts.scheme}://{parts.netloc}{tail}"


# Endpoints


def check_endpoint(*, url: str, event_types: list[str]) -> None:
    """Raise ValidationError (by field) for a URL or events an endpoint may not have."""
    errors = {}
    try:
        sending.check_url(url)
    except ValueError as error:
        errors["url"] = [str(error)]
    if unknown := [name for name in event_types if not types.is_known(name)]:
        errors["event_types"] = [f"Unknown event types: {', '.join(unknown)}."]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def create_endpoint(
    user, *, url: str, event_types: list[str], description: str = "", enabled: bool = True, actor
) -> tuple[WebhookEndpoint, str]:
    """The endpoint and its secret, which is shown this once."""
    check_endpoint(url=url, event_types=event_types)
    type(user).objects.select_for_update().filter(pk=user.pk).first()  # one creation at a time
    if WebhookEndpoint.objects.filter(user=user).count() >= settings.WEBHOOK_MAX_ENDPOINTS:
        raise ConflictError(f"An account has at most {settings.WEBHOOK_MAX_ENDPOINTS} endpoints.")
    secret = signing.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        user=user,
        url=url,
        event_types=event_types,
        description=description,
        enabled=enabled,
        disabled_reason="" if enabled else "Disabled by its owner.",
        secret=signing.seal(secret),
    )
    _log("webhook_endpoint.created", endpoint, actor=actor, event_types=event_types)
    return endpoint, secret


@transaction.atomic
def update_endpoint(endpoint: WebhookEndpoint, *, actor, **changes) -> WebhookEndpoint:
    """Change its `url`, `event_types`, `description` or `enabled`. Enabling it again starts
    its record of failures afresh. The row is locked and only what changes is written: a
    rotation or a disable meanwhile is not undone."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    check_endpoint(
        url=changes.get("url", endpoint.url),
        event_types=changes.get("event_types", endpoint.event_types),
    )
    changed = {name: value for name, value in changes.items() if getattr(endpoint, name) != value}
    for name, value in changed.items():
        setattr(endpoint, name, value)
    fields = [*changed, "updated_at"]
    if changed.get("enabled"):
        endpoint.failing_since, endpoint.disabled_reason = None, ""
        fields += ["failing_since", "disabled_reason"]
    elif changed.get("enabled") is False:
        endpoint.disabled_reason = "Disabled by its owner."
        fields.append("disabled_reason")
    if changed:
        endpoint.save(update_fields=fields)
        if "url" in changed:
            changed["url"] = shown_url(changed["url"])
        _log("webhook_endpoint.updated", endpoint, actor=actor, changes=changed)
    return endpoint


@transaction.atomic
def delete_endpoint(endpoint: WebhookEndpoint, *, actor) -> None:
    _log("webhook_endpoint.deleted", endpoint, actor=actor)
    endpoint.delete()


@transaction.atomic
def rotate_secret(endpoint: WebhookEndpoint, *, actor) -> str:
    """A new secret, shown this once. The one it replaces still signs, beside it, for
    WEBHOOK_SECRET_OVERLAP_HOURS, while receivers move to the new one (a second rotation in
    that time ends the oldest at once)."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = signing.new_secret()
    endpoint.previous_secret = endpoint.secret
    overlap = datetime.timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS)
    endpoint.previous_secret_expires_at = timezone.now() + overlap
    endpoint.secret = signing.seal(secret)
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    _log("webhook_endpoint.secret_rotated", endpoint, actor=actor)
    return secret


def secrets_in_use(endpoint: WebhookEndpoint) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    in_use = [signing.unseal(endpoint.secret)]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at > timezone.now():
        in_use.append(signing.unseal(endpoint.previous_secret))
    return in_use


@transaction.atomic
def disable_endpoint(endpoint: WebhookEndpoint, *, reason: str) -> bool:
    """Stop sending to it (its queued deliveries are not sent), and tell its owner; False if it
    was disabled already."""
    disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason[:500]
    )
    if disabled:
        _log("webhook_endpoint.disabled", endpoint, actor=None, reason=reason)
        params = {"url": shown_url(endpoint.url), "reason": reason}
        notify(endpoint.user, DISABLED_NOTIFICATION, params=params, resource=endpoint)
    return bool(disabled)


def _log(action: str, endpoint: WebhookEndpoint, *, actor, **metadata) -> None:
    audit.log(
        action,
        target=("webhook_endpoint", endpoint.pk),
        actor=actor,
        metadata={"url": shown_url(endpoint.url), **metadata},
    )


# Events and deliveries


def send_event(user, event_type: str, data: dict) -> list[WebhookDelivery]:
    """Queue the event for each of the user's enabled endpoints that subscribe to it, in the
    caller's transaction: `{"type", "timestamp", "data"}`, one `webhook-id` for all."""
    if not types.is_registered(event_type):
        raise ValueError(f"Webhook event type {event_type!r} is not registered.")
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(user=user, enabled=True).only(
            "pk", "event_types"
        )
        if types.matches(endpoint.event_types, event_type)
    ]
    if not endpoints:
        return []
    body, message_id = _body(event_type, data), new_message_id()
    return [
        outbox.add(
            WebhookDelivery(
                endpoint=endpoint, event_type=event_type, message_id=message_id, payload=body
            )
        )
        for endpoint in endpoints
    ]


def _body(event_type: str, data: dict) -> str:
    payload = {"type": event_type, "timestamp": timezone.now(), "data": data}
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    if len(body.encode()) > settings.WEBHOOK_MAX_PAYLOAD_BYTES:
        raise ValueError(f"The {event_type} payload exceeds WEBHOOK_MAX_PAYLOAD_BYTES.")
    return body


def send_notification(notification) -> list[WebhookDelivery]:
    """A notification its recipient chose to receive by webhook: `notification.created`, with
    the notification as the API writes it, in the recipient's language. One too big to send
    is left out (logged): it must not undo what notified them (a staff message to everyone)."""
    data = NotificationSerializer(notification, context={"reader": notification.user}).data
    try:
        return send_event(notification.user, NOTIFICATION_EVENT, data)
    except ValueError:
        logger.warning("notification %s not sent by webhook: too big", notification.pk)
        return []


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def _refuse_disabled(endpoint: WebhookEndpoint, doing: str) -> None:
    if not endpoint.enabled:
        raise ConflictError(f"The endpoint is disabled: enable it to {doing}.")


@transaction.atomic
def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint alone, whatever it subscribes to: its owner
    sees that it receives and verifies deliveries. 409 while it is disabled."""
    _refuse_disabled(endpoint, "test it")
    data = {"endpoint_id": endpoint.pk, "message": "A test event: the endpoint works."}
    return outbox.add(
        WebhookDelivery(
            endpoint=endpoint,
            event_type=TEST_EVENT,
            message_id=new_message_id(),
            payload=_body(TEST_EVENT, data),
        )
    )


def _replay(delivery: WebhookDelivery) -> WebhookDelivery:
    return outbox.add(
        WebhookDelivery(
            endpoint_id=delivery.endpoint_id,
            event_type=delivery.event_type,
            message_id=delivery.message_id,
            payload=delivery.payload,
            replay_of=delivery,
        )
    )


@transaction.atomic
def replay_delivery(delivery: WebhookDelivery, *, actor) -> WebhookDelivery:
    """Send the delivery's message again, as a new delivery with the same `webhook-id` and
    body (a receiver that already has it may ignore it). 409 while its endpoint is disabled."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
    _refuse_disabled(endpoint, "replay its deliveries")  # a recovery meanwhile waits
    replay = _replay(delivery)
    audit.log(
        "webhook_delivery.replayed",
        target=("webhook_delivery", delivery.pk),
        actor=actor,
        metadata={"replay_id": replay.pk, "event_type": delivery.event_type},
    )
    return replay


RECOVER_LIMIT = 500


@transaction.atomic
def recover_failed(endpoint: WebhookEndpoint, *, since: datetime.datetime, actor) -> dict:
    """Replay the endpoint's deliveries that failed (no attempt left, or refused for good),
    made since `since` (at most WEBHOOK_DELIVERY_RETENTION_DAYS ago: older ones are purged)
    and not replayed yet, oldest first: what an outage of the receiver lost. Test events are
    left out. At most RECOVER_LIMIT a call: `{"replayed", "more"}` (call again for the rest).
    409 while the endpoint is disabled; two at once, or a replay meanwhile, take turns."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    _refuse_disabled(endpoint, "recover its deliveries")
    kept = timezone.now() - datetime.timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    failed = (
        endpoint.deliveries.filter(
            status=WebhookDelivery.Status.FAILED,
            created_at__gte=max(since, kept),
            replays__isnull=True,
        )
        .exclude(event_type=TEST_EVENT)
        .order_by("pk")
    )
    ids = list(failed.values_list("pk", flat=True)[:RECOVER_LIMIT])
    for start in range(0, len(ids), 50):  # their payloads may be large: 50 at a time
        for delivery in WebhookDelivery.objects.filter(pk__in=ids[start : start + 50]).order_by(
            "pk"
        ):
            _replay(delivery)
    if replayed := len(ids):
        _log(
            "webhook_endpoint.recovered",
            endpoint,
            actor=actor,
            since=since.isoformat(),
            count=replayed,
        )
    return {"replayed": replayed, "more": replayed == RECOVER_LIMIT and failed.exists()}


PURGE_BATCH = 1000


def purge_old_deliveries(*, older_than_days: int | None = None) -> int:
    """Delete the sent and failed deliveries made more than WEBHOOK_DELIVERY_RETENTION_DAYS
    ago, with their attempts, oldest first, PURGE_BATCH at a time (each batch its own short
    transaction); returns how many went. A replay whose original goes stays, unlinked.
    Ids grow with time: the old rows are those below the first one made since the cutoff, and
    the batches walk them once, by id."""
    days = settings.WEBHOOK_DELIVERY_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - datetime.timedelta(days=days)
    rows = WebhookDelivery.objects.order_by("pk")
    bound = rows.filter(created_at__gte=cutoff).values_list("pk", flat=True).first()
    ended = [WebhookDelivery.Status.SENT, WebhookDelivery.Status.FAILED]
    old = rows.filter(created_at__lt=cutoff, status__in=ended)
    if bound is not None:
        old = old.filter(pk__lt=bound)
    purged, last = 0, 0
    while batch := list(old.filter(pk__gt=last).values_list("pk", flat=True)[:PURGE_BATCH]):
        with transaction.atomic():
            WebhookDelivery.objects.filter(pk__in=batch).only("pk").delete()
        purged, last = purged + len(batch), batch[-1]
    if purged:
        logger.info("Purged %s webhook deliveries older than %s days", purged, days)
    return purged


class WebhookOutbox(Outbox):
    def retry_delay(self, attempts: int) -> float:
        """The schedule's step for this attempt (its last step from there on), with jitter."""
        schedule = settings.WEBHOOK_RETRY_SCHEDULE
        return jittered(schedule[min(attempts, len(schedule)) - 1])


def _hand_over(delivery_id: int) -> None:
    from webhooks.tasks import deliver_webhook

    deliver_webhook.delay(delivery_id=delivery_id)


outbox = WebhookOutbox(WebhookDelivery, settings_prefix="WEBHOOK", hand_over=_hand_over)
redispatch_pending = outbox.redispatch_pending


def deliver_webhook(delivery_id: int, *, batch: int | None = None) -> Delivery:
    """Send one row, and other due rows along with it (WEBHOOK_SEND_BATCH), at most once each
    where that can be known (core's outbox). A batch reads each endpoint, and decrypts its
    secrets, once."""
    endpoints: dict[int, WebhookEndpoint] = {}
    return outbox.deliver(
        delivery_id,
        send=partial(_send, endpoints=endpoints),
        is_permanent=is_permanent,
        batch=batch or settings.WEBHOOK_SEND_BATCH,  # a failure's why is in its attempts' log
    )


def is_permanent(error: Exception) -> bool:
    """A disabled endpoint, or an address webhooks may not reach; every other failure (no
    answer, any answer but a 2xx) is retried on the schedule."""
    return isinstance(error, EndpointDisabled | sending.AddressRefused)


def _send(delivery: WebhookDelivery, *, endpoints: dict[int, WebhookEndpoint]) -> None:
    """`endpoints`: those the batch has read (with their `secrets`), by id."""
    endpoint = endpoints.get(delivery.endpoint_id)
    if endpoint is None:
        endpoint = endpoints[delivery.endpoint_id] = WebhookEndpoint.objects.get(
            pk=delivery.endpoint_id
        )
        endpoint.secrets = secrets_in_use(endpoint)
    if not endpoint.enabled:
        raise EndpointDisabled("The endpoint is disabled.")
    body = delivery.payload.encode()
    now = timezone.now()
    headers = {
        "content-type": "application/json",
        "user-agent": settings.WEBHOOK_USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signing.signature(
            endpoint.secrets,
            message_id=delivery.message_id,
            timestamp=now,
            body=delivery.payload,
        ),
    }
    started = time.monotonic()
    attempt = WebhookAttempt(delivery=delivery)
    try:
        answer = sending.post(endpoint.url, body=body, headers=headers)
    except Exception as error:
        attempt.error = f"{type(error).__name__}: {error}"[:500]
        _end_attempt(attempt, started, endpoint, succeeded=False)
        raise
    attempt.status_code, attempt.response_body = answer.status, answer.body
    succeeded = 200 <= answer.status < 300
    if not succeeded:
        _end_attempt(attempt, started, endpoint, succeeded=False)
        raise EndpointRefused(f"HTTP {answer.status}")
    try:
        _end_attempt(attempt, started, endpoint, succeeded=True)
    except DatabaseError:  # the receiver has it: a failed log line must not send it again
        logger.warning("webhook delivery %s sent; its attempt not logged", delivery.pk)


_ATTEMPT_COLUMNS = ("delivery_id", "status_code", "response_body", "error", "duration_ms")
# One statement, one round trip: the attempt's line, and after a success the end of the
# endpoint's run of failures (whichever worker started it). Its own transaction, whose commit
# does not wait for the disk (set_config(..., true) holds for the statement's transaction).
_LOG_ATTEMPT_SQL = f"""
    WITH ended AS (
        UPDATE {WebhookEndpoint._meta.db_table} SET failing_since = NULL
        WHERE id = %s AND %s AND failing_since IS NOT NULL
    )
    INSERT INTO {WebhookAttempt._meta.db_table} ({", ".join(_ATTEMPT_COLUMNS)}, attempted_at)
    SELECT {", ".join(["%s"] * len(_ATTEMPT_COLUMNS))}, now()
    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
"""  # noqa: S608 (table names)


def _log_attempt(attempt: WebhookAttempt, endpoint: WebhookEndpoint, *, succeeded: bool) -> None:
    """A line of the log, not a state: on PostgreSQL its commit does not wait for the disk,
    which would cost more than the request did. A crash of the database may lose the last
    lines (and the end of a run of failures, which the next success ends again); the
    delivery's own row is committed as any other."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        attempt.save()
        if succeeded:
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(
                failing_since=None
            )
        return
    values = [getattr(attempt, column) for column in _ATTEMPT_COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(_LOG_ATTEMPT_SQL, [endpoint.pk, succeeded, *values])


def _end_attempt(attempt: WebhookAttempt, started: float, endpoint, *, succeeded: bool) -> None:
    """Log the attempt; keep the endpoint's record of failures: a success ends it, a failure
    starts it, and a failure WEBHOOK_DISABLE_AFTER_DAYS into it disables the endpoint. The
    endpoint, which the rest of the batch uses, keeps up with what it changes."""
    attempt.duration_ms = round((time.monotonic() - started) * 1000)
    _log_attempt(attempt, endpoint, succeeded=succeeded)
    if succeeded:
        endpoint.failing_since = None
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = timezone.now()
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since=None).update(
            failing_since=endpoint.failing_since
        )
        return
    days = settings.WEBHOOK_DISABLE_AFTER_DAYS
    if timezone.now() - endpoint.failing_since >= datetime.timedelta(days=days):
        disable_endpoint(endpoint, reason=f"Every attempt failed for {days} days.")
        endpoint.enabled = False
