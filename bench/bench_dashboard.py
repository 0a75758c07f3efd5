"""The staff dashboard (`GET /admin/dashboard/`, invoicegen/dashboard.py and charts.py) on a
trail of BENCH_DASHBOARD_ROWS audit entries (1M) spread evenly over the last 31 days, beside
BENCH_DASHBOARD_EMAILS outbox rows (100,000: 2% failed, 1% still queued, the rest sent) and
BENCH_DASHBOARD_DOWNLOADS download events (50,000, one in ten refused) over the same days. The
entries' actions are registered ones, the COMMON names below and every security event, the
first taking most entries and the last few, each with its registered category; security
events fail.

Timed, after BENCH_DASHBOARD_WARMUP (2) requests: the whole page through Django's test client
as a logged-in staff member, BENCH_DASHBOARD_RUNS (15) times; then its parts alone as many
times, the counting (`daily_activity()`, the database's share) and the drawing of the four
charts. The very first request, on caches as the fill left them, is reported apart. Target:
the page in 500 ms or less.
"""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.test import Client

from audit import registry
from bench.bench_audit import fill
from bench.capture import AuditLog, User
from bench.common import (
    env_int,
    interleaved,
    print_table,
    scratch_database,
    summary_ms,
    write_results,
)
from invoicegen.dashboard import activity
from invoicegen.dashboard.charts import dashboard_charts
from invoicegen.dashboard.services import count_audit_days

ROWS = env_int("BENCH_DASHBOARD_ROWS", 1_000_000)
EMAILS = env_int("BENCH_DASHBOARD_EMAILS", 100_000)
DOWNLOADS = env_int("BENCH_DASHBOARD_DOWNLOADS", 50_000)
RUNS = env_int("BENCH_DASHBOARD_RUNS", 15)
WARMUP = env_int("BENCH_DASHBOARD_WARMUP", 2)
TARGET_MS = 500
COMMON = [
    "invoice.updated", "user.login", "invoice.created", "invoice_item.created", "invoice.sent",
    "download.succeeded", "user.login_failed", "email.failed", "payment.created",
]  # fmt: skip
SPAN = "interval '31 days' - interval '1 minute'"

# Row g's action: index floor(n * u^3) of the names, u spread over [0, 1) (most take the first).
AUDIT_SQL = """
INSERT INTO audit_auditlog (action, category, description, user_id, user_email, resource_type,
    resource_id, ip_address, user_agent, method, path, request_id, metadata, success,
    created_at, digest, origin)
SELECT names[pick], categories[pick], 'bench entry', 1 + g %% 1000,
    'user' || (g %% 1000) || '@example.com', 'thing', (g %% 50000)::text,
    ('10.0.' || (g %% 250) || '.' || (g %% 200))::inet, 'bench', 'POST', '/api/things/',
    md5(g::text), '{{}}'::jsonb, NOT failing[pick],
    now() - interval '31 days' + g * (({span}) / %(rows)s), md5(g::text) || md5((g + 1)::text),
    'api'
FROM (
    SELECT g, 1 + floor({count} * power(((g::bigint * 7919) %% 1000) / 1000.0, 3))::int AS pick,
        ARRAY[{names}] AS names, ARRAY[{categories}] AS categories, ARRAY[{failing}] AS failing
    FROM generate_series(1, %(rows)s) AS g
) AS picked
"""

EMAILS_SQL = """
INSERT INTO emails_emaillog (to_email, from_email, subject, template_name, context, message_id,
    resource_type, resource_id, reply_to, status, attempts, next_attempt_at, claimed_at,
    last_error, sent_at, created_at)
SELECT 'client' || (g %% 5000) || '@example.com', 'noreply@invoicegen.local', 'Bench ' || g,
    'admin_message', '{{}}'::jsonb, '<bench.' || g || '@invoicegen.local>', '', '', '',
    CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 100 = 1 THEN 'queued' ELSE 'sent' END,
    CASE WHEN g %% 50 = 0 THEN 6 WHEN g %% 100 = 1 THEN 0 ELSE 1 END,
    at, CASE WHEN g %% 100 = 1 THEN NULL ELSE at + interval '2 seconds' END,
    CASE WHEN g %% 50 = 0 THEN 'SMTPRecipientsRefused' ELSE '' END,
    CASE WHEN g %% 50 = 0 OR g %% 100 = 1 THEN NULL ELSE at + interval '3 seconds' END, at
FROM (
    SELECT g, now() - interval '31 days' + g * (({span}) / %(emails)s) AS at
    FROM generate_series(1, %(emails)s) AS g
) AS timed
"""

DOWNLOADS_SQL = """
INSERT INTO downloads_downloadevent (granted, reason, user_agent, created_at)
SELECT g %% 10 <> 0, CASE WHEN g %% 10 = 0 THEN 'expired' ELSE 'granted' END, 'bench',
    now() - interval '31 days' + g * (({span}) / %(downloads)s)
FROM generate_series(1, %(downloads)s) AS g
"""


def _literals(values) -> str:
    return ", ".join(f"'{value}'" for value in values)  # registered names: [a-z0-9_.] only


def audit_sql() -> str:
    names = [name for name in COMMON if registry.is_registered(name)]
    names += [name for name in registry.security_actions() if name not in names]
    actions = [registry.action(name) for name in names]
    return AUDIT_SQL.format(
        span=SPAN,
        count=len(names),
        names=_literals(names),
        categories=_literals(a.category for a in actions),
        failing=", ".join("true" if a.security else "false" for a in actions),
    )


def fill_all() -> float:
    started = time.perf_counter()
    fill(ROWS, sql=audit_sql())
    with connection.cursor() as cursor:
        cursor.execute(EMAILS_SQL.format(span=SPAN), {"emails": EMAILS})
        cursor.execute(DOWNLOADS_SQL.format(span=SPAN), {"downloads": DOWNLOADS})
        cursor.execute("VACUUM ANALYZE emails_emaillog")
        cursor.execute("VACUUM ANALYZE downloads_downloadevent")
    return time.perf_counter() - started


def _timed(call, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _figures(seconds: list[float]) -> dict:
    return {
        "min_ms": round(min(seconds) * 1000, 1),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        **summary_ms(seconds),
    }


@dataclass(frozen=True)
class Variant:
    name: str
    audit_counts: Callable

    def configure(self) -> None:
        activity.audit_counts = self.audit_counts


COUNTED = Variant("past days from their counts", activity.audit_counts)
LIVE = Variant("every day live (nothing counted)", activity.count_entries)


def bench() -> dict:
    print(f"\nfilling {ROWS:,} audit entries, {EMAILS:,} emails, {DOWNLOADS:,} downloads ...")
    fill_seconds = fill_all()
    started = time.perf_counter()
    counted_days = len(count_audit_days())
    count_seconds = time.perf_counter() - started
    staff = User.objects.create_user("staff@example.com", "x-bench-pw-1", is_staff=True)
    client = Client()
    client.force_login(staff)

    def page(variant=None) -> float:
        started = time.perf_counter()
        response = client.get("/admin/dashboard/")
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        assert response.content.count(b'<svg class="chart"') == 4
        return elapsed

    first = page()
    pages = interleaved([COUNTED, LIVE], page, rounds=RUNS, warmup=WARMUP)
    COUNTED.configure()
    count_times = _timed(activity.daily_activity, RUNS)
    days = activity.daily_activity()
    draw_times = _timed(lambda: dashboard_charts(days), RUNS)
    charted = sum(sum(s.values) for s in days.audit_by_category)
    result = {
        "audit_rows": AuditLog.objects.count(),
        "audit_rows_in_window": charted,
        "emails": EMAILS,
        "downloads": DOWNLOADS,
        "days": len(days.days),
        "fill_seconds": round(fill_seconds, 1),
        "first_count_of_the_past_days": {
            "days": counted_days,
            "seconds": round(count_seconds, 2),
        },
        "target_ms": TARGET_MS,
        "first_request_ms": round(first * 1000, 1),
        "page": {name: _figures(values) for name, values in pages.items()},
        "counting": _figures(count_times),
        "drawing": _figures(draw_times),
    }
    print_table(
        f"GET /admin/dashboard/, {result['audit_rows']:,} audit entries ({charted:,} in the "
        f"{len(days.days)} days), filled in {fill_seconds:.0f} s, {counted_days} past days "
        f"counted in {count_seconds:.1f} s; first request {result['first_request_ms']} ms",
        ["part", "min ms", "median ms", "p95 ms", "n"],
        [
            [name, figures["min_ms"], figures["median_ms"], figures["p95_ms"], figures["n"]]
            for name, figures in [
                *[(f"page, {name}", figures) for name, figures in result["page"].items()],
                ("counting (past days from their counts)", result["counting"]),
                ("drawing", result["drawing"]),
            ]
        ],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_dashboard needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    with scratch_database():
        result = bench()
    write_results("dashboard", {"runs": RUNS, "warmup": WARMUP, **result})
