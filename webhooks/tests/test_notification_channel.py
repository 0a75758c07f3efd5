"""The `webhook` channel of notification preferences: a notification of a type the user turned
it on for reaches their endpoints as a signed `notification.created` event."""

import pytest
from standardwebhooks.webhooks import Webhook

from invoicegen.billing import services as billing
from invoicegen.billing.models import Payment
from invoicegen.billing.tests.factories import finalized_invoice
from notifications import preferences
from notifications.models import Notification
from notifications.services import send_admin_message
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def pay(user, django_capture_on_commit_callbacks):
    invoice = finalized_invoice(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        billing.record_payment(invoice, amount=invoice.total, method=Payment.Method.CARD)


def notification_events(receiver) -> list:
    return [r for r in receiver.received if r.payload["type"] == "notification.created"]


def test_a_type_turned_on_reaches_the_endpoint_as_the_api_writes_it_in_the_users_language(
    user, endpoint, receiver, api, django_capture_on_commit_callbacks
):
    user.language = "de"
    user.save(update_fields=["language"])
    preferences.set_matrix(user, {"invoice_paid": {"webhook": "immediate"}})

    pay(user, django_capture_on_commit_callbacks)

    [event] = notification_events(receiver)
    assert event.verified
    data = Webhook(receiver.secret).verify(event.body, event.headers)["data"]
    notification = Notification.objects.get(user=user, type="invoice_paid")
    assert data == api.get(f"/api/notifications/{notification.pk}/").json()
    assert data["title"].startswith("Rechnung")  # the recipient's language, not the sender's
    delivery = WebhookDelivery.objects.get(event_type="notification.created")
    assert delivery.status == WebhookDelivery.Status.SENT


def test_the_channel_is_off_until_the_user_turns_it_on(
    user, endpoint, receiver, django_capture_on_commit_callbacks
):
    pay(user, django_capture_on_commit_callbacks)

    assert receiver.received  # the invoice's own events
    assert notification_events(receiver) == []
    assert Notification.objects.filter(user=user, type="invoice_paid").exists()


def test_an_endpoint_that_does_not_subscribe_to_it_gets_none(
    user, endpoint_for, receiver, django_capture_on_commit_callbacks
):
    _, receiver.secret = endpoint_for(receiver.url, ["invoice.paid"])
    preferences.set_matrix(user, {"invoice_paid": {"webhook": "immediate"}})

    pay(user, django_capture_on_commit_callbacks)

    assert [r.payload["type"] for r in receiver.received] == ["invoice.paid"]


def test_a_type_switched_off_again_stops(
    user, endpoint, receiver, django_capture_on_commit_callbacks
):
    preferences.set_matrix(user, {"invoice_paid": {"webhook": "immediate"}})
    preferences.set_matrix(user, {"invoice_paid": {"webhook": "off"}})

    pay(user, django_capture_on_commit_callbacks)

    assert notification_events(receiver) == []


def test_a_critical_type_never_goes_by_webhook(api, user, endpoint, receiver):
    answer = api.put(
        "/api/notifications/preferences/",
        {"preferences": {"account_activity": {"webhook": "immediate"}}},
        format="json",
    )

    assert answer.status_code == 400
    assert "critical" in answer.json()["preferences"]["account_activity"][0]
    assert preferences.matrix(user)["account_activity"]["webhook"] == "off"


def test_it_goes_apart_from_the_feed(user, endpoint, receiver, django_capture_on_commit_callbacks):
    preferences.set_matrix(user, {"invoice_paid": {"webhook": "immediate", "in_app": "off"}})

    pay(user, django_capture_on_commit_callbacks)

    [event] = notification_events(receiver)
    assert event.payload["data"]["type"] == "invoice_paid"


def test_one_too_big_is_left_out_and_undoes_nothing(user, endpoint, settings):
    settings.WEBHOOK_MAX_PAYLOAD_BYTES = 2000
    preferences.set_matrix(user, {"admin_message": {"webhook": "immediate"}})

    [sent] = send_admin_message([user], title="Downtime", message="x" * 3000)

    assert Notification.objects.filter(pk=sent.pk).exists()
    assert not WebhookDelivery.objects.filter(event_type="notification.created").exists()
