"""`manage.py send_queued_webhooks`: the due deliveries sent here and now (a setup with no
broker), or handed to the workers."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from emails.tests.helpers import celery_publishing_to
from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db


def send_queued_webhooks(*args) -> str:
    out = StringIO()
    call_command("send_queued_webhooks", *args, stdout=out)
    return out.getvalue()


def test_it_sends_what_is_due_and_counts_the_outcomes(user, endpoint, receiver, endpoint_for):
    with Receiver(answer=lambda received: 500) as refusing:
        endpoint_for(refusing.url, ["invoice.paid"])
        services.send_event(user, "invoice.paid", {"id": 1})  # one delivery to each endpoint
        services.send_event(user, "invoice.sent", {"id": 1})  # to `endpoint` alone

        output = send_queued_webhooks()

    assert "3 due: 1 queued, 2 sent" in output  # the refused one waits for its retry
    assert sorted(r.payload["type"] for r in receiver.received) == ["invoice.paid", "invoice.sent"]
    assert all(r.verified for r in receiver.received)
    assert "0 due: nothing to send" in send_queued_webhooks()


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_it_refuses_a_limit_below_one(limit):
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        send_queued_webhooks("--limit", limit)


def test_dispatch_hands_each_due_delivery_to_the_workers(user, endpoint, redis_server):
    deliveries = [services.send_event(user, "invoice.paid", {"n": n})[0] for n in range(2)]

    with celery_publishing_to(redis_server.url()):
        output = send_queued_webhooks("--dispatch")

    assert "dispatched 2 webhook delivery(ies) to the workers" in output
    queued = [json.loads(raw) for raw in redis_server.client().lrange("celery", 0, -1)]
    assert {message["headers"]["task"] for message in queued} == {"webhooks.tasks.deliver_webhook"}
    assert len(queued) == len(deliveries)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"queued"}
