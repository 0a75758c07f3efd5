"""Notification and outbox benchmarks, each comparison side by side in one run:

(a) GET /api/notifications/unread-count/ against a trivial authenticated DRF endpoint, through
    gunicorn, requests/s (target ratio >= 0.8); and, to settle whether to cache the count,
    the COUNT over the partial index of unread rows against a Redis GET of a cached number;
(b) the outbox: 1,000 emails queued in one transaction, delivered to an aiosmtpd server on
    loopback by two Celery worker processes on Redis (target >= 200 emails/s).
"""

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from bench.common import print_table, scratch_database, summary_ms, write_results
from emails.models import EmailLog
from emails.services import queue_email
from invoicegen.accounts.models import User
from invoicegen.accounts.services import create_auth_token
from notifications import services as notifications
from notifications.models import Notification

ROOT = Path(__file__).resolve().parent.parent
EMAILS = int(os.environ.get("BENCH_EMAILS", 1000))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _child_env(**extra) -> dict:
    url = settings.DATABASES["default"]
    database = f"postgres://{url['USER']}@{url['HOST']}:{url['PORT']}/{url['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": database,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        **extra,
    }


@contextmanager
def gunicorn():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "invoicegen.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--log-level", "warning"],
        cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _hammer(url: str, token: str, seconds: float, threads: int = 4) -> tuple[float, list[float]]:
    """Requests/s and latencies from `threads` clients for `seconds`."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def client():
        request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
        while time.perf_counter() < stop:
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            latencies.append(time.perf_counter() - started)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def bench_unread_count(user: User) -> dict:
    token = create_auth_token(user)
    endpoints = {
        "trivial endpoint": "/bench/ping/",
        "unread-count": "/api/notifications/unread-count/",
    }
    rates = {name: [] for name in endpoints}
    latencies = {name: [] for name in endpoints}
    with gunicorn() as base:
        for path in endpoints.values():
            _hammer(base + path, token, 1)  # warm-up
        for _ in range(3):  # interleaved rounds: drift hits both alike
            for name, path in endpoints.items():
                rate, times = _hammer(base + path, token, 4)
                rates[name].append(rate)
                latencies[name] += times
    result = {
        name: {
            "requests_per_s": round(statistics.median(rates[name]), 1),
            **summary_ms(latencies[name]),
        }
        for name in endpoints
    }
    result["ratio"] = round(
        result["unread-count"]["requests_per_s"] / result["trivial endpoint"]["requests_per_s"], 3
    )
    print_table(
        "(a) through gunicorn (2 workers), 4 clients",
        ["endpoint", "requests/s", "p50 ms", "p95 ms"],
        [
            [n, v["requests_per_s"], v["p50_ms"], v["p95_ms"]]
            for n, v in result.items()
            if isinstance(v, dict)
        ],
    )
    print(f"  unread-count / trivial = {result['ratio']}")
    result["count_vs_cache"] = _count_vs_cache(user)
    return result


def _count_vs_cache(user: User, rounds: int = 2000) -> dict:
    """The query the endpoint makes, against the cache read it would make instead."""
    cache.set(f"unread:{user.pk}", notifications.unread_count(user))
    timings = {"COUNT on the partial index": [], "Redis GET of a cached count": []}
    for _ in range(rounds):
        started = time.perf_counter()
        notifications.unread_count(user)
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


class _Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


@contextmanager
def celery_workers(smtp_port: int, processes: int = 2):
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "invoicegen", "worker", "--pool=prefork",
         f"--concurrency={processes}", "--loglevel=WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT,
        env=_child_env(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_USE_TLS="false"),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(3)  # the pool forks and connects
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=20)


def bench_outbox(user: User) -> dict:
    sink = _Sink()
    port = _free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with celery_workers(port):
            started = time.perf_counter()
            with transaction.atomic():
                for n in range(EMAILS):
                    queue_email(
                        "admin_message",
                        to=f"reader{n}@example.com",
                        context={"name": "Reader", "title": f"Bench {n}", "message": "Hello."},
                    )
            committed = time.perf_counter()  # the workers start with the commit
            deadline = time.monotonic() + 120
            while sink.count < EMAILS and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - committed
    finally:
        smtp.stop()
    sent = EmailLog.objects.filter(status=EmailLog.Status.SENT).count()
    result = {
        "emails": EMAILS,
        "received_by_smtp": sink.count,
        "rows_sent": sent,
        "queue_seconds": round(committed - started, 3),
        "delivery_seconds": round(elapsed, 3),
        "emails_per_s": round(sink.count / elapsed, 1),
    }
    print_table(
        f"(b) outbox: {EMAILS:,} emails, 2 Celery worker processes on Redis, aiosmtpd",
        ["figure", "value"],
        [[k, v] for k, v in result.items()],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL:
        print("bench_notifications needs PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
        return
    with scratch_database():
        reader = User.objects.create_user("reader@example.com", "bench-password-1")
        with transaction.atomic():
            Notification.objects.bulk_create(
                Notification(user=reader, type="admin_message", title=f"n{n}") for n in range(2000)
            )
            notifications.mark_all_read(reader)
            Notification.objects.bulk_create(
                Notification(user=reader, type="admin_message", title=f"u{n}") for n in range(40)
            )
        results = {"unread_count": bench_unread_count(reader), "outbox": bench_outbox(reader)}
        write_results("notifications", results)
