"""Notification and outbox benchmarks, each comparison side by side in one run:

(a) GET /api/notifications/unread-count/ against the trivial authenticated `GET /bench/ping/`,
    through gunicorn, requests/s in interleaved rounds (target ratio >= 0.8); and, to settle
    whether to cache the count, the COUNT over the partial index of unread rows against a Redis
    GET of a cached number;
(b) the outbox: BENCH_EMAILS (1,000) emails queued in one transaction, delivered to an aiosmtpd
    server on loopback by two Celery worker processes on Redis, BENCH_OUTBOX_REPEATS (3) times
    with the same workers (target >= 500 emails/s); for reference, raw smtplib to the same
    server over one kept connection, from one process and from two at once.

Environment: BENCH_EMAILS, BENCH_OUTBOX_REPEATS, BENCH_HTTP_ROUNDS (3), BENCH_HTTP_SECONDS (4).
"""

import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from bench import capture
from bench.capture import EmailLog, Notification, User, create_auth_token, queue_email
from bench.common import (
    ROOT,
    child_env,
    env_int,
    free_port,
    hammer_interleaved,
    print_table,
    scratch_database,
    summary_ms,
    write_results,
)

EMAILS = env_int("BENCH_EMAILS", 1000)
OUTBOX_REPEATS = env_int("BENCH_OUTBOX_REPEATS", 3)
HTTP_ROUNDS = env_int("BENCH_HTTP_ROUNDS", 3)
HTTP_SECONDS = env_int("BENCH_HTTP_SECONDS", 4)


def bench_unread_count(user: User) -> dict:
    token = create_auth_token(user)
    endpoints = {
        "trivial endpoint": "/bench/ping/",
        "unread-count": "/api/notifications/unread-count/",
    }
    rates, latencies = hammer_interleaved(
        token, endpoints, rounds=HTTP_ROUNDS, seconds=HTTP_SECONDS
    )
    ratios = [a / b for a, b in zip(rates["unread-count"], rates["trivial endpoint"], strict=True)]
    result = {
        name: {
            "requests_per_s_min": round(min(rates[name]), 1),
            "requests_per_s_median": round(statistics.median(rates[name]), 1),
            "per_run": [round(rate, 1) for rate in rates[name]],
            **summary_ms(latencies[name]),
        }
        for name in endpoints
    }
    result["ratio"] = round(statistics.median(ratios), 3)
    print_table(
        f"(a) through gunicorn (2 workers), 4 clients, {HTTP_ROUNDS} runs of {HTTP_SECONDS} s",
        ["endpoint", "req/s min", "req/s median", "p50 ms", "p95 ms"],
        [
            [n, v["requests_per_s_min"], v["requests_per_s_median"], v["p50_ms"], v["p95_ms"]]
            for n, v in result.items()
            if isinstance(v, dict)
        ],
    )
    print(f"  unread-count / trivial = {result['ratio']} (median of the runs' ratios)")
    result["count_vs_cache"] = _count_vs_cache(user)
    return result


def _count_vs_cache(user: User, rounds: int = 2000) -> dict:
    """The query the endpoint makes, against the cache read it would make instead."""
    cache.set(f"unread:{user.pk}", capture.notifications.unread_count(user))
    timings = {"COUNT on the partial index": [], "Redis GET of a cached count": []}
    for _ in range(rounds):
        started = time.perf_counter()
        capture.notifications.unread_count(user)
        timings["COUNT on the partial index"].append(time.perf_counter() - started)
        started = time.perf_counter()
        cache.get(f"unread:{user.pk}")
        timings["Redis GET of a cached count"].append(time.perf_counter() - started)
    result = {name: summary_ms(values) for name, values in timings.items()}
    print_table(
        "    the unread count: query or cache (one call, in process)",
        ["read", "p50 ms", "p95 ms"],
        [[n, v["p50_ms"], v["p95_ms"]] for n, v in result.items()],
    )
    return result


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


@contextmanager
def celery_workers(smtp_port: int, processes: int = 2):
    capture.purge_task_queue()  # nothing left over from an earlier run
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "invoicegen", "worker", "--pool=prefork",
         f"--concurrency={processes}", "--loglevel=WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env=child_env(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_USE_TLS="false"),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(4)  # the pool forks and connects
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def _outbox_batch(sink: Sink, batch: int) -> dict:
    received = sink.count
    started = time.perf_counter()
    with transaction.atomic():
        for n in range(EMAILS):
            queue_email(
                "admin_message",
                to=f"reader{n}@example.com",
                context={"name": "Reader", "title": f"Bench {batch} {n}", "message": "Hello."},
            )
    committed = time.perf_counter()  # the workers start with the commit
    deadline = time.monotonic() + 120
    while sink.count - received < EMAILS and time.monotonic() < deadline:
        time.sleep(0.02)
    elapsed = time.perf_counter() - committed
    delivered = sink.count - received
    return {
        "received_by_smtp": delivered,
        "queue_seconds": round(committed - started, 3),
        "delivery_seconds": round(elapsed, 3),
        "emails_per_s": round(delivered / elapsed, 1),
    }


def _raw_smtplib(port: int, processes: int, count: int) -> float:
    """Emails/s of `processes` raw smtplib senders at once, each over one kept connection."""
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_probe", "127.0.0.1", str(port), str(count)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    figures = [dict(part.split("=") for part in out.split()) for out in outputs]
    # The slowest sender's own clock (its start-up excluded) against everything it sent.
    seconds = max(float(f["seconds"]) for f in figures)
    assert time.perf_counter() - started >= seconds
    return sum(int(f["sent"]) for f in figures) / seconds


def bench_outbox() -> dict:
    sink = Sink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with celery_workers(port):
            batches = [_outbox_batch(sink, batch) for batch in range(OUTBOX_REPEATS)]
        raw = {
            f"{processes} process{'es' if processes > 1 else ''}": [
                _raw_smtplib(port, processes, EMAILS) for _ in range(OUTBOX_REPEATS)
            ]
            for processes in (1, 2)
        }
    finally:
        smtp.stop()
    rates = [batch["emails_per_s"] for batch in batches]
    result = {
        "emails_per_batch": EMAILS,
        "batches": batches,
        "rows_sent": EmailLog.objects.filter(status=EmailLog.Status.SENT).count(),
        "emails_per_s_min": round(min(rates), 1),
        "emails_per_s_median": round(statistics.median(rates), 1),
        "raw_smtplib_emails_per_s": {
            name: {
                "min": round(min(values), 1),
                "median": round(statistics.median(values), 1),
                "per_run": [round(v, 1) for v in values],
            }
            for name, values in raw.items()
        },
    }
    print_table(
        f"(b) outbox: {EMAILS:,} emails per batch, 2 Celery worker processes on Redis, aiosmtpd",
        ["batch", "queue s", "delivery s", "emails/s", "received"],
        [
            [n, b["queue_seconds"], b["delivery_seconds"], b["emails_per_s"], b["received_by_smtp"]]
            for n, b in enumerate(batches, 1)
        ],
    )
    print(
        f"  emails/s min {result['emails_per_s_min']}, median {result['emails_per_s_median']}; "
        f"rows marked sent: {result['rows_sent']:,}"
    )
    print_table(
        "    raw smtplib to the same server, one kept connection per process (reference)",
        ["senders", "emails/s min", "emails/s median"],
        [[n, v["min"], v["median"]] for n, v in result["raw_smtplib_emails_per_s"].items()],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL:
        print("bench_notifications needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
        return
    results = {"http_rounds": HTTP_ROUNDS, "http_seconds": HTTP_SECONDS}
    with scratch_database():
        reader = User.objects.create_user("reader@example.com", "bench-password-1")
        with transaction.atomic():
            Notification.objects.bulk_create(
                capture.make_notification(reader, n, read=True) for n in range(2000)
            )
            Notification.objects.bulk_create(
                capture.make_notification(reader, n) for n in range(40)
            )
        results["unread_count"] = bench_unread_count(reader)
        results["outbox"] = bench_outbox()
        write_results("notifications", results)
