"""Outgoing webhooks on PostgreSQL and Redis: two Celery worker processes deliver to a Standard
Webhooks receiver on loopback (webhooks/receiver.py, in a process of its own, which checks every
signature with the standardwebhooks library).

- Rate: BENCH_ROUNDS (3) rounds of BENCH_WEBHOOKS (3,000) events queued in one transaction;
  deliveries/s from the commit to the last one received. Target: at least 300/s.
- A worker killed: a round in which one of the two workers is SIGKILLed once a third of the
  deliveries are in; the sweeper (beat's task, run here every BENCH_SWEEP_SECONDS) hands
  back what it held once its lease (WEBHOOK_SENDING_LEASE_SECONDS) ends. Target: none lost, at
  most one duplicate (the receiver dedupes on `webhook-id`).
"""

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction

from bench.capture import User, purge_task_queue
from bench.common import (
    ROOT,
    child_env,
    env_int,
    free_port,
    print_table,
    scratch_database,
    write_results,
)
from webhooks import services
from webhooks.models import WebhookDelivery

EVENTS = env_int("BENCH_WEBHOOKS", 3000)
ROUNDS = env_int("BENCH_ROUNDS", 3)
SWEEP_SECONDS = env_int("BENCH_SWEEP_SECONDS", 5)
LEASE = 21  # over the task's time limit: WEBHOOK_TIMEOUT (5) + WEBHOOK_SEND_BATCH_SECONDS + 10
WORKER_ENV = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
    "WEBHOOK_TIMEOUT": "5",
    "WEBHOOK_SENDING_LEASE_SECONDS": str(LEASE),
    "WEBHOOK_SEND_BATCH": os.environ.get("WEBHOOK_SEND_BATCH", "50"),
}


class Receiver:
    """`python -m webhooks.receiver` in a process of its own; counts what it printed."""

    def __init__(self, port: int, secret: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webhooks.receiver", "--port", str(port), "--secret", secret],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.process.stderr.readline()  # "listening on ..."
        self.received = self.duplicates = self.unverified = 0
        threading.Thread(target=self._count, daemon=True).start()

    def _count(self) -> None:
        for line in self.process.stdout:
            self.received += 1
            self.duplicates += '"duplicate": true' in line
            self.unverified += '"verified": false' in line

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@contextmanager
def workers(count: int = 2):
    purge_task_queue()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "invoicegen",
                "worker",
                "--pool=solo",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname=bench-webhooks-{n}@%h",
            ],
            cwd=ROOT,
            env=child_env(**WORKER_ENV),
            stdout=subprocess.DEVNULL,
        )
        for n in range(count)
    ]
    try:
        time.sleep(4)  # they connect
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)


def _drain() -> None:
    """Wait until the workers have taken every task of the round before (those of rows that
    another task's batch sent answer at once), so that a round starts on an empty queue."""
    from redis import Redis

    broker = Redis.from_url(settings.CELERY_BROKER_URL)
    deadline = time.monotonic() + 120
    while broker.llen("celery") and time.monotonic() < deadline:
        time.sleep(0.2)


def _round(user, receiver: Receiver, *, kill: subprocess.Popen | None = None) -> dict:
    _drain()
    start = receiver.received
    with transaction.atomic():
        for n in range(EVENTS):
            services.send_event(user, "invoice.paid", {"id": n, "number": f"INV-{n}"})
        committed = time.perf_counter()
    killed = False
    swept = time.monotonic()
    deadline = time.monotonic() + 120 + LEASE
    while receiver.received - receiver.duplicates - start < EVENTS:
        assert time.monotonic() < deadline, "deliveries stopped"
        if kill and not killed and receiver.received - start >= EVENTS // 3:
            os.kill(kill.pid, signal.SIGKILL)
            killed = True
        if kill and time.monotonic() - swept > SWEEP_SECONDS:
            services.redispatch_pending()  # beat's sweeper
            swept = time.monotonic()
        time.sleep(0.01)
    elapsed = time.perf_counter() - committed
    return {
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(EVENTS / elapsed, 1),
        "received": receiver.received - start,
    }


def main() -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # this process checks the URL
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    settings.WEBHOOK_SENDING_LEASE_SECONDS = LEASE  # this process sweeps
    with scratch_database():
        user = User.objects.create_user(email="bench@example.com", password="x")
        port = free_port()
        _endpoint, secret = services.create_endpoint(
            user, url=f"http://127.0.0.1:{port}/webhooks", event_types=["*"], actor=user
        )
        receiver = Receiver(port, secret)
        try:
            with workers() as processes:
                rounds = [_round(user, receiver) for _ in range(ROUNDS)]
                before = receiver.duplicates
                killed = _round(user, receiver, kill=processes[0])
                killed["duplicates"] = receiver.duplicates - before
        finally:
            receiver.stop()
        rows = WebhookDelivery.objects.values_list("status", flat=True)
        not_sent = sum(1 for status in rows if status != "sent")
    rates = [r["deliveries_per_s"] for r in rounds]
    results = {
        "events_per_round": EVENTS,
        "workers": 2,
        "rounds": rounds,
        "deliveries_per_s_min": min(rates),
        "deliveries_per_s_median": statistics.median(rates),
        "worker_killed": {**killed, "lost": EVENTS * (ROUNDS + 1) - receiver.received
                          + receiver.duplicates, "lease_seconds": LEASE},
        "rows_not_sent": not_sent,
        "signatures_not_verified": receiver.unverified,
    }  # fmt: skip
    print_table(
        "Webhook deliveries, 2 Celery workers, receiver on loopback (target >= 300/s)",
        ["run", "seconds", "deliveries/s", "received", "duplicates"],
        [
            *[[f"round {n + 1}", r["seconds"], r["deliveries_per_s"], r["received"], 0]
              for n, r in enumerate(rounds)],
            ["a worker SIGKILLed", killed["seconds"], killed["deliveries_per_s"],
             killed["received"], killed["duplicates"]],
        ],
    )  # fmt: skip
    print(
        f"min {results['deliveries_per_s_min']}/s, median {results['deliveries_per_s_median']}/s;"
        f" lost {results['worker_killed']['lost']}, rows not sent {not_sent},"
        f" signatures not verified {receiver.unverified}"
    )
    write_results("webhooks", results)
