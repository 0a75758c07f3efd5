"""Audit trail benchmarks, every comparison measured side by side in one run:

(a) an audited invoice update vs the same update with capture off vs django-auditlog;
(b) newest-50 audit pages through the API on 1M rows: first, 10,000 pages deep, by user,
    by resource;
(c) the retention cleanup of 500k of 1M rows, and the p99 of audited writes meanwhile;
(d) the CSV export of 1M rows through the API: rows/s and peak RSS (in a child process).
"""

import datetime
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import signals
from django.test import Client
from rest_framework.pagination import Cursor

from audit import context as audit_context
from audit import receivers
from audit.api.views import NewestFirstCursor
from audit.models import AuditLog
from audit.services import cleanup_audit_logs, seal_audit_log
from bench.common import print_table, scratch_database, summary_ms, write_results
from invoicegen.accounts.models import User
from invoicegen.accounts.services import create_auth_token
from invoicegen.billing.models import Invoice
from invoicegen.billing.services import create_invoice

ROWS = int(os.environ.get("BENCH_AUDIT_ROWS", 1_000_000))
OLD_ROWS = ROWS // 2
REQUEST = audit_context.AuditContext(
    ip_address="203.0.113.7",
    user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
    method="PATCH",
    path="/api/invoices/1/",
    request_id="bench",
    origin="api",
)


def _capture(on: bool) -> None:
    uid = f"audit.{Invoice._meta.label}"
    if on:
        receivers.connect_model_receivers()
    else:
        signals.post_init.disconnect(sender=Invoice, dispatch_uid=f"{uid}.init")
        signals.post_save.disconnect(sender=Invoice, dispatch_uid=f"{uid}.save")
        signals.post_delete.disconnect(sender=Invoice, dispatch_uid=f"{uid}.delete")


def _auditlog(on: bool) -> None:
    from auditlog.registry import auditlog

    if on:
        auditlog.register(Invoice)
    else:
        auditlog.unregister(Invoice)


VARIANTS = {
    "capture off": lambda: (_capture(False), _auditlog(False)),
    "invoicegen audit": lambda: (_capture(True), _auditlog(False)),
    "django-auditlog": lambda: (_capture(False), _auditlog(True)),
}


def _updates(invoice_id: int, count: int, label: str) -> list[float]:
    invoice = Invoice.objects.get(pk=invoice_id)
    times = []
    for i in range(count):
        started = time.perf_counter()
        with transaction.atomic():
            invoice.client_name = f"Client {label} {i}"
            invoice.save(update_fields=["client_name", "updated_at"])
        times.append(time.perf_counter() - started)
    return times


def bench_updates(invoice_id: int, title: str, rounds: int = 6, per_round: int = 300) -> dict:
    times = {name: [] for name in VARIANTS}
    with audit_context.bind(REQUEST):
        for _ in range(rounds):  # interleaved, so that drift hits every variant alike
            for name, configure in VARIANTS.items():
                configure()
                times[name] += _updates(invoice_id, per_round, name)
    VARIANTS["invoicegen audit"]()
    result = {name: summary_ms(values) for name, values in times.items()}
    base = result["capture off"]["mean_ms"]
    for values in result.values():
        values["ratio_to_off"] = round(values["mean_ms"] / base, 3)
        values["updates_per_s"] = round(1000 / values["mean_ms"], 1)
    result["auditlog_over_ours"] = round(
        result["django-auditlog"]["mean_ms"] / result["invoicegen audit"]["mean_ms"], 3
    )
    print_table(
        f"(a) invoice update, one transaction each, {title}",
        ["variant", "mean ms", "p50 ms", "p95 ms", "updates/s", "x capture off"],
        [
            [n, v["mean_ms"], v["p50_ms"], v["p95_ms"], v["updates_per_s"], v["ratio_to_off"]]
            for n, v in result.items()
            if isinstance(v, dict)
        ],
    )
    print(f"  django-auditlog costs {result['auditlog_over_ours']}x ours per update")
    return result


FILL_SQL = """
INSERT INTO audit_auditlog (action, category, description, user_id, user_email, resource_type,
    resource_id, ip_address, user_agent, method, path, request_id, metadata, success,
    created_at, digest)
SELECT (ARRAY['invoice.created','invoice.updated','user.login','payment.processed'])[1 + g %% 4],
    'invoice', 'bench entry', 1 + g %% 1000, 'user' || (g %% 1000) || '@example.com', 'invoice',
    (g %% 50000)::text, ('10.0.' || (g %% 250) || '.' || (g %% 200))::inet, 'bench', 'POST',
    '/api/invoices/', md5(g::text), '{"changes": {"status": ["draft", "finalized"]}}'::jsonb,
    g %% 10 <> 0,
    CASE WHEN g <= %(old)s
        THEN now() - interval '800 days' + g * interval '2 seconds'
        ELSE now() - interval '300 days' + (g - %(old)s) * interval '20 seconds' END,
    md5(g::text) || md5((g + 1)::text)
FROM generate_series(1, %(rows)s) AS g
"""


def fill(rows: int) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(FILL_SQL, {"rows": rows, "old": OLD_ROWS})
        cursor.execute("ANALYZE audit_auditlog")
    return time.perf_counter() - started


def _timed_get(client: Client, url: str, token: str | None, count: int) -> list[float]:
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, **headers)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return times


def bench_lists(staff: User, count: int = 200) -> dict:
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    token = create_auth_token(staff)
    client = Client()
    newest = AuditLog.objects.order_by("-id").values_list("id", flat=True).first()
    paginator = NewestFirstCursor()
    paginator.base_url = "/api/audit/logs/"
    deep = paginator.encode_cursor(Cursor(offset=0, reverse=False, position=str(newest - 500_000)))
    urls = {
        "first page": "/api/audit/logs/",
        "10,000 pages deep": deep.replace("http://testserver", ""),
        "filtered by user": "/api/audit/logs/?user=7",
        "by resource": "/api/audit/resource/invoice/1234/logs/",
        "failures only": "/api/audit/logs/?success=false",
    }
    result = {}
    for _ in range(2):  # warm-up, then measure
        result = {
            name: summary_ms(_timed_get(client, url, token, count)) for name, url in urls.items()
        }
    result["deep_over_first"] = round(
        result["10,000 pages deep"]["p95_ms"] / result["first page"]["p95_ms"], 3
    )
    print_table(
        f"(b) GET newest 50 through the API, {AuditLog.objects.count():,} rows",
        ["page", "p50 ms", "p95 ms"],
        [[n, v["p50_ms"], v["p95_ms"]] for n, v in result.items() if isinstance(v, dict)],
    )
    print(f"  deep page p95 / first page p95 = {result['deep_over_first']}")

    admin = Client()
    admin.force_login(staff)
    pages = {
        "changelist": "/admin/audit/auditlog/",
        "action prefix filter": "/admin/audit/auditlog/?action_prefix=payment.",
        "search by email": "/admin/audit/auditlog/?q=user7%40example.com",
        "detail page": f"/admin/audit/auditlog/{newest}/change/",
    }
    result["admin"] = {
        name: summary_ms(_timed_get(admin, url, None, count // 10)) for name, url in pages.items()
    }
    print_table(
        "    the same trail in the Django admin (a staff member's browser page)",
        ["page", "p50 ms", "p95 ms"],
        [[n, v["p50_ms"], v["p95_ms"]] for n, v in result["admin"].items()],
    )
    return result


def _writer(invoice_id: int, stop: threading.Event, times: list[float]) -> None:
    try:
        with audit_context.bind(REQUEST):
            while not stop.is_set():
                times += _updates(invoice_id, 20, "concurrent")
    finally:
        connections.close_all()


def bench_cleanup(invoice_id: int) -> dict:
    started = time.perf_counter()
    while seal_audit_log(max_rows=10_000):  # as the beat seals: small ranges
        pass
    seal_seconds = time.perf_counter() - started
    baseline = []
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(invoice_id, stop, baseline))
    writer.start()
    time.sleep(3)
    stop.set()
    writer.join()

    during, stop = [], threading.Event()
    writer = threading.Thread(target=_writer, args=(invoice_id, stop, during))
    writer.start()
    started = time.perf_counter()
    result = cleanup_audit_logs(days=settings.AUDIT_MIN_RETENTION_DAYS, batch_size=10_000)
    elapsed = time.perf_counter() - started
    stop.set()
    writer.join()
    figures = {
        "sealed_rows_per_s": round(ROWS / seal_seconds),
        "deleted": result.deleted,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(result.deleted / elapsed),
        "writes_before": summary_ms(baseline),
        "writes_during": summary_ms(during),
    }
    print_table(
        f"(c) cleanup of {result.deleted:,} rows in batches of 10,000",
        ["figure", "value"],
        [
            ["rows/s", f"{figures['rows_per_s']:,}"],
            ["seconds", figures["seconds"]],
            ["audited write p99 before, ms", figures["writes_before"]["p99_ms"]],
            ["audited write p99 during, ms", figures["writes_during"]["p99_ms"]],
            ["writes during cleanup", figures["writes_during"]["n"]],
            ["seal rate (rows/s, for reference)", f"{figures['sealed_rows_per_s']:,}"],
        ],
    )
    return figures


def bench_export(staff: User) -> dict:
    """In a child process, so that its peak RSS is the export's alone."""
    env = {**os.environ, "BENCH_EXPORT_DB": connection.settings_dict["NAME"]}
    env["BENCH_EXPORT_TOKEN"] = create_auth_token(staff)
    output = subprocess.run(
        [sys.executable, "-m", "bench.export_probe"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = dict(line.split("=", 1) for line in output.split() if "=" in line)
    result = {
        "rows": int(figures["rows"]),
        "seconds": float(figures["seconds"]),
        "rows_per_s": round(int(figures["rows"]) / float(figures["seconds"])),
        "peak_rss_mb": round(int(figures["peak_rss_kb"]) / 1024, 1),
        "baseline_rss_mb": round(int(figures["baseline_rss_kb"]) / 1024, 1),
    }
    print_table(
        "(d) CSV export through the API",
        ["figure", "value"],
        [[k, f"{v:,}" if isinstance(v, int) else v] for k, v in result.items()],
    )
    return result


def _owner_invoice_and_staff() -> tuple[Invoice, User]:
    owner = User.objects.create_user("owner@example.com", "bench-password-1")
    staff = User.objects.create_user("staff@example.com", "bench-password-1", is_staff=True)
    invoice = create_invoice(
        owner,
        client_name="Client",
        client_email="client@example.com",
        due_date=datetime.date(2030, 1, 1),
        items=[{"description": "Work", "quantity": Decimal(1), "unit_price": Decimal(100)}],
    )
    return invoice, staff


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_audit needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    with scratch_database():
        invoice, _ = _owner_invoice_and_staff()
        results = {"updates_new_trail": bench_updates(invoice.pk, "on a new trail")}
    with scratch_database():
        # The filled rows come first: ids grow with time, as in a real trail.
        print(f"\nfilling {ROWS:,} audit rows ...", flush=True)
        results |= {"rows": ROWS, "fill_seconds": round(fill(ROWS), 1)}
        invoice, staff = _owner_invoice_and_staff()
        results["updates"] = bench_updates(invoice.pk, f"on a trail of {ROWS:,} rows")
        results["lists"] = bench_lists(staff)
        results["export"] = bench_export(staff)
        results["cleanup"] = bench_cleanup(invoice.pk)
        write_results("audit", results)
