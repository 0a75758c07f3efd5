"""Deliveries as production runs them: Celery worker processes on Redis and PostgreSQL, one of
them killed while it sends."""

import os
import signal
import time

import pytest
from django.db import transaction

from emails.tests.helpers import celery_publishing_to, wait_until
from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 14  # over the task's time limit: WEBHOOK_TIMEOUT + WEBHOOK_SEND_BATCH_SECONDS + 10
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
    "WEBHOOK_TIMEOUT": "3",
    "WEBHOOK_SEND_BATCH_SECONDS": "1",
    "WEBHOOK_SENDING_LEASE_SECONDS": str(LEASE),
}


def test_a_worker_killed_mid_run_loses_no_delivery_and_repeats_at_most_one(
    user, loopback, start_worker, worker_broker, settings
):
    settings.WEBHOOK_SENDING_LEASE_SECONDS = LEASE  # the sweeper's, in this process
    slow = {"on": True}

    def answer(received):
        if slow["on"]:
            time.sleep(0.02)  # time for the kill to land in the middle of a batch
        return 204

    with Receiver(answer=answer) as receiver:
        _, receiver.secret = services.create_endpoint(
            user, url=receiver.url, event_types=["*"], actor=user
        )
        workers = [start_worker(**WORKER_ENV) for _ in range(2)]
        with celery_publishing_to(worker_broker), transaction.atomic():
            for n in range(200):
                services.send_event(user, "invoice.paid", {"n": n})
        assert wait_until(lambda: len(receiver.received) >= 40, timeout=30), [
            w.log_path.read_text()[-2000:] for w in workers
        ]
        os.kill(workers[0].pid, signal.SIGKILL)
        slow["on"] = False

        def all_sent():
            with celery_publishing_to(worker_broker):
                services.redispatch_pending()  # what beat does every 15 s
            return not WebhookDelivery.objects.exclude(status="sent").exists()

        assert wait_until(all_sent, timeout=LEASE + 30, interval=1), workers[
            1
        ].log_path.read_text()[-3000:]
        time.sleep(1)  # a late duplicate would arrive about now
    unique = {received.webhook_id for received in receiver.received}
    assert len(unique) == 200  # every delivery's own message (one event, one endpoint each)
    assert len(receiver.received) - len(unique) <= 1
    assert all(received.verified for received in receiver.received)
    assert workers[1].poll() is None
