"""The providers' delivery webhooks: anymail's tracking view of each provider, mounted at
`/webhooks/email/<provider>/tracking/`, with the provider's own authentication (anymail's basic
auth, ANYMAIL_WEBHOOK_SECRET, and the signatures it checks). A refused request answers 400 and
is audited as a security event; a malformed one answers 400. A client address whose refused
requests used up WEBHOOK_REFUSED_THROTTLE_RATE is answered 429 before any check: a flood of
forged posts would otherwise cost a signature check each. Each event anymail reports
(its `tracking` signal) is collected, and the post's events go to one service call,
emails.delivery.record_delivery_events."""

from contextvars import ContextVar
from functools import cache

import anymail.urls
from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.signals import EventType
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from emails import delivery
from emails.models import DeliveryStatus


@cache
def tracking_views() -> dict[str, type]:
    """provider -> anymail's tracking view class, as anymail's own URLs name them."""
    views = {}
    for pattern in anymail.urls.urlpatterns:
        if pattern.name and pattern.name.endswith("_tracking_webhook"):
            provider = pattern.name.removesuffix("_tracking_webhook")
            views[provider] = pattern.callback.view_class
    return views


@csrf_exempt
def tracking_webhook(request, provider: str):
    # Without ANYMAIL_WEBHOOK_SECRET, anymail's views let every post through unless their
    # provider signs it: no webhook is served then, so no one can forge a bounce.
    view_class = tracking_views().get(provider)
    if view_class is None or not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        raise Http404
    if retry_after := delivery.refused_webhooks_retry_after():
        response = JsonResponse({"detail": "Too many refused webhook requests."}, status=429)
        response["Retry-After"] = str(retry_after)
        return response
    received = []
    token = _received.set(received)
    try:
        # A view a request: anymail's views read their settings (keys, secrets) when made.
        response = view_class.as_view()(request)
    except AnymailWebhookValidationFailure as refusal:
        delivery.record_refused_webhook(provider=provider, reason=str(refusal))
        return JsonResponse({"detail": "Webhook authentication failed."}, status=400)
    except ImproperlyConfigured as error:  # a provider whose keys are not set
        raise Http404 from error
    # A body that is not the provider's format: anymail's parsers index into it as they go.
    except (AnymailError, ValueError, TypeError, KeyError, AttributeError):
        return JsonResponse({"detail": "Malformed webhook payload."}, status=400)
    finally:
        _received.reset(token)
    # The post's events (a batch) in one service call, one transaction: a failure leaves none
    # of them, and the provider posts the batch again (each event is applied once).
    delivery.record_delivery_events(received)
    return response


# The events anymail reports while a webhook's view parses its post.
_received: ContextVar[list | None] = ContextVar("email_delivery_events", default=None)


# anymail's event types that move an email, and the status each moves it to.
STATUSES = {
    EventType.DELIVERED: DeliveryStatus.DELIVERED,
    EventType.DEFERRED: DeliveryStatus.DEFERRED,
    EventType.BOUNCED: DeliveryStatus.BOUNCED,
    EventType.COMPLAINED: DeliveryStatus.COMPLAINED,
    EventType.REJECTED: DeliveryStatus.REJECTED,
    EventType.UNSUBSCRIBED: DeliveryStatus.UNSUBSCRIBED,
}


def is_soft_bounce(raw) -> bool:
    """anymail reports soft and hard bounces alike as `bounced`; the provider's own event says
    which (Postmark's SoftBounce, Brevo's soft_bounce, SendGrid's blocked, SES's Transient)."""
    if not isinstance(raw, dict):
        return False
    bounce = raw.get("bounce")
    return (
        raw.get("Type") == "SoftBounce"
        or raw.get("event") == "soft_bounce"
        or (raw.get("event") == "bounce" and raw.get("type") == "blocked")
        or (isinstance(bounce, dict) and bounce.get("bounceType") == "Transient")
    )


def receive_tracking_event(sender, event, esp_name, **kwargs) -> None:
    """anymail's tracking signal: one delivery event, from the view of a provider."""
    status = STATUSES.get(event.event_type)
    if status is None:  # opens, clicks, queued, sent: not a delivery outcome
        return
    if status == DeliveryStatus.BOUNCED and is_soft_bounce(event.esp_event):
        status = DeliveryStatus.SOFT_BOUNCED
    provider = next((name for name, view in tracking_views().items() if view is sender), esp_name)
    text = delivery.storable
    received = delivery.DeliveryEvent(
        provider=provider,
        event_id=text(str(event.event_id or delivery.stable_event_id(event.esp_event))),
        status=status,
        recipient=text(str(event.recipient or "")),
        description=text(str(event.description or event.mta_response or event.reject_reason or "")),
        occurred_at=event.timestamp or timezone.now(),
        message_id=text(str(event.message_id or "")),
    )
    collected = _received.get()
    if collected is not None:  # anymail's views are served only through tracking_webhook
        collected.append(received)
