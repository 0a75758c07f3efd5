"""Outgoing webhooks (webhooks/) through a worker's crash: a customer's endpoint on a receiver of
the harness's, which checks every signature as a receiver elsewhere would."""

import os
import signal
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from bench.soak import checks
from bench.soak.checks import Mark, Outcome
from bench.soak.topology import pid_of_connection
from emails.tests.helpers import celery_publishing_to, wait_until
from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.receiver import Receiver

if TYPE_CHECKING:
    from bench.soak.scenarios import Run

# The longest the receiver holds its answers back for the kill: under WEBHOOK_TIMEOUT, so that
# the other worker's send, held too, is answered before its deadline (or it would go twice).
HOLD_SECONDS = 3


def webhook_worker_kill(run: "Run", outcome: Outcome, mark: Mark) -> None:
    """A few hundred events queued at once for a customer's endpoint, beside the events of its
    invoices that the load makes; once a third have arrived, the receiver holds its answers
    back and a pool process waiting for one is SIGKILLed (the receiver has that message, the
    worker never hears so). Every delivery is sent within a lease and two sweeps, every message
    arrives with a valid signature, and at most one arrives twice."""
    events = int(run.seconds(300, short=150))
    outcome.figures["webhook_events"] = events
    held, released = threading.Event(), threading.Event()

    def answer(received) -> int:
        if len(receiver.received) >= events // 3 and not released.is_set():
            held.set()
            released.wait(timeout=HOLD_SECONDS)
        return 204

    checks.fresh_connection()
    customer = get_user_model().objects.get(pk=run.load.customers[0].account.user_id)
    with Receiver(answer=answer) as receiver:
        endpoint, receiver.secret = services.create_endpoint(
            customer, url=receiver.url, event_types=["*"], actor=customer
        )
        try:
            with celery_publishing_to(run.topology.env["REDIS_URL"]), transaction.atomic():
                for n in range(events):
                    services.send_event(customer, "invoice.paid", {"soak": run.load.run, "n": n})
            try:
                killed_at = _kill_a_sender(run, urlsplit(receiver.url).port, held, outcome)
            finally:
                released.set()
            if killed_at is not None:
                _check_deliveries(endpoint, receiver, killed_at, outcome)
        finally:
            # The load's later invoice events are not sent to a receiver that is gone.
            services.update_endpoint(endpoint, actor=customer, enabled=False)


def _kill_a_sender(run: "Run", port: int, held: threading.Event, outcome: Outcome) -> float | None:
    """SIGKILL the pool process that waits for a held answer; when, or None (and a failure)."""
    if not held.wait(timeout=60):
        outcome.failures.append("a third of the webhooks did not arrive in 60 s: nothing injected")
        return None
    pools = {pid: w for w in run.topology.workers for pid in w.children()}
    pid = pid_of_connection(None, port, pools)
    if pid is None:
        outcome.failures.append("no pool process waits for the receiver's held answer")
        return None
    os.kill(pid, signal.SIGKILL)
    outcome.faulted.add(f"{pools[pid].name} children")
    outcome.figures["killed"] = pools[pid].name
    return time.monotonic()


def _check_deliveries(endpoint, receiver: Receiver, killed_at: float, outcome: Outcome) -> None:
    """Every delivery of the endpoint sent (within a lease and two sweeps of the kill) and
    received, each verified, one message at most received twice."""
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
    unsent = deliveries.exclude(status=WebhookDelivery.Status.SENT)
    timeout = settings.WEBHOOK_SENDING_LEASE_SECONDS + 2 * settings.WEBHOOK_SWEEP_INTERVAL_SECONDS
    recovered = wait_until(lambda: not unsent.exists(), timeout=timeout, interval=0.5)
    seconds = time.monotonic() - killed_at
    outcome.fault(killed_at)
    # Sent rows only: the load may have queued one more meanwhile, on its way.
    sent = deliveries.filter(status=WebhookDelivery.Status.SENT)
    received = list(receiver.received)
    lost = set(sent.values_list("message_id", flat=True)) - {r.webhook_id for r in received}
    duplicates = sum(r.duplicate for r in received)
    unverified = sum(not r.verified for r in received)
    outcome.figures["webhooks"] = {
        "deliveries": deliveries.count(),  # of the scenario's events and of the load's
        "received": len(received),
        "duplicates": duplicates,
        "lost": len(lost),
        "unverified": unverified,
        "kill_to_last_delivery_seconds": round(seconds, 1),
    }
    if not recovered:
        outcome.failures.append(
            f"{unsent.count()} webhook deliveries still unsent {seconds:.0f} s after the kill "
            f"(WEBHOOK_SENDING_LEASE_SECONDS is {settings.WEBHOOK_SENDING_LEASE_SECONDS})"
        )
    if lost:
        outcome.failures.append(f"{len(lost)} webhook(s) sent but never received: {min(lost)}")
    if unverified:
        outcome.failures.append(f"{unverified} webhook(s) received with a wrong signature")
    if duplicates > 1:
        outcome.failures.append(f"{duplicates} webhooks received twice after one kill")
