"""Read paths, side by side in one run:

(a) `list(Invoice.objects.all()[:200])` in process, our capture on against truly off (no
    receiver, wrapper or audited queryset of ours: bench/capture.py), interleaved rounds;
(b) `GET /api/invoices/?page_size=50` and `GET /api/notifications/` through Django's test
    client, capture on (the product as it ships) against truly off (also without our audit
    middleware);
(c) requests/s through gunicorn (2 sync workers, the product's gunicorn.conf.py) of
    `GET /api/invoices/` and `GET /api/notifications/` against the trivial `GET /bench/ping/`
    (authenticated like every endpoint, and nothing else), 4 client threads, interleaved rounds,
    with the ratios to ping computed within each round.

Targets: (a) and (b) within 3% of off; (c) invoices >= 0.4x ping, notifications >= 0.5x ping.

Environment: BENCH_LIST_INVOICES (1000 invoices of 2 items for one user), BENCH_ROUNDS (7),
BENCH_LIST_OPS (200 lists per run), BENCH_LIST_REQUESTS (100 requests per run),
BENCH_HTTP_ROUNDS (3), BENCH_HTTP_SECONDS (4 per endpoint and round).
"""

import datetime
import statistics
import time
from decimal import Decimal

from django.db import connection, transaction

from bench import capture
from bench.capture import Invoice, InvoiceItem, Notification, User, create_auth_token
from bench.common import (
    compare_runs,
    env_int,
    hammer_interleaved,
    interleaved,
    print_comparison,
    print_table,
    scratch_database,
    summary_ms,
    write_results,
)

INVOICES = env_int("BENCH_LIST_INVOICES", 1000)
ROUNDS = env_int("BENCH_ROUNDS", 7)
LIST_OPS = env_int("BENCH_LIST_OPS", 200)
REQUESTS = env_int("BENCH_LIST_REQUESTS", 100)
HTTP_ROUNDS = env_int("BENCH_HTTP_ROUNDS", 3)
HTTP_SECONDS = env_int("BENCH_HTTP_SECONDS", 4)

INVOICES_URL = "/api/invoices/?page_size=50"
NOTIFICATIONS_URL = "/api/notifications/"


def setup() -> User:
    """One user with INVOICES invoices of 2 items each and 2,040 notifications, 40 unread."""
    capture.all_off()  # the data, without an entry per row
    owner = User.objects.create_user("reader@example.com", "bench-password-1")
    with transaction.atomic():
        invoices = Invoice.objects.bulk_create(
            Invoice(
                user=owner,
                number=f"L-{n}",
                year=2030,
                sequence=n,
                client_name=f"Client {n}",
                client_email="client@example.com",
                due_date=datetime.date(2030, 1, 1),
                subtotal=Decimal("100.00"),
                total=Decimal("100.00"),
            )
            for n in range(1, INVOICES + 1)
        )
        InvoiceItem.objects.bulk_create(
            item for invoice in invoices for item in capture.new_invoice_items(invoice, 2)
        )
        Notification.objects.bulk_create(
            capture.make_notification(owner, n, read=True) for n in range(2000)
        )
        Notification.objects.bulk_create(capture.make_notification(owner, n) for n in range(40))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    capture.OURS.configure()
    return owner


def _lists(variant) -> float:
    started = time.perf_counter()
    for _ in range(LIST_OPS):
        rows = list(Invoice.objects.all()[:200])
    assert len(rows) == 200
    return (time.perf_counter() - started) / LIST_OPS


def bench_in_process() -> dict:
    runs = interleaved([capture.OFF, capture.OURS], _lists, rounds=ROUNDS)
    result = compare_runs(runs, capture.OFF.name)
    print_comparison(
        f"(a) list(Invoice.objects.all()[:200]), mean ms over {LIST_OPS} per run, {ROUNDS} runs",
        result,
    )
    return result


def bench_api(owner: User) -> dict:
    token = create_auth_token(owner)
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    clients = {
        capture.OFF.name: capture.api_client(audit=False),
        capture.OURS.name: capture.api_client(audit=True),
    }
    result = {}
    for url in (INVOICES_URL, NOTIFICATIONS_URL):

        def requests(variant, url=url) -> float:
            client = clients[variant.name]
            started = time.perf_counter()
            for _ in range(REQUESTS):
                response = client.get(url, **headers)
                assert response.status_code == 200, (url, response.status_code)
            return (time.perf_counter() - started) / REQUESTS

        runs = interleaved([capture.OFF, capture.OURS], requests, rounds=ROUNDS)
        result[url] = compare_runs(runs, capture.OFF.name)
        print_comparison(
            f"(b) GET {url} (test client), mean ms over {REQUESTS} per run, {ROUNDS} runs",
            result[url],
        )
    capture.OURS.configure()
    return result


def bench_http(owner: User) -> dict:
    token = create_auth_token(owner)
    endpoints = {
        "ping": "/bench/ping/",
        "invoices": "/api/invoices/",
        "notifications": NOTIFICATIONS_URL,
    }
    rates, latencies = hammer_interleaved(
        token, endpoints, rounds=HTTP_ROUNDS, seconds=HTTP_SECONDS
    )
    result = {}
    for name, path in endpoints.items():
        ratios = [rate / ping for rate, ping in zip(rates[name], rates["ping"], strict=True)]
        result[name] = {
            "path": path,
            "requests_per_s_min": round(min(rates[name]), 1),
            "requests_per_s_median": round(statistics.median(rates[name]), 1),
            "ratio_to_ping": round(statistics.median(ratios), 3),
            "per_run": [round(rate, 1) for rate in rates[name]],
            "latency": summary_ms(latencies[name]),
        }
    print_table(
        f"(c) through gunicorn (2 workers), 4 clients, {HTTP_ROUNDS} runs of {HTTP_SECONDS} s",
        ["endpoint", "req/s min", "req/s median", "x ping", "p50 ms", "p95 ms"],
        [
            [
                f"{name} {v['path']}",
                v["requests_per_s_min"],
                v["requests_per_s_median"],
                v["ratio_to_ping"],
                v["latency"]["p50_ms"],
                v["latency"]["p95_ms"],
            ]
            for name, v in result.items()
        ],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_lists needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    results = {
        "invoices": INVOICES,
        "rounds": ROUNDS,
        "lists_per_run": LIST_OPS,
        "requests_per_run": REQUESTS,
        "http_rounds": HTTP_ROUNDS,
        "http_seconds": HTTP_SECONDS,
    }
    with scratch_database():
        owner = setup()
        results["in_process_list"] = bench_in_process()
        results["api"] = bench_api(owner)
        results["gunicorn"] = bench_http(owner)
    write_results("lists", results)
