"""Audit trail write benchmarks, every comparison measured side by side in one run, in interleaved
rounds (bench/common.py `interleaved`), each system switched on or truly off between rounds by
bench/capture.py (its docstring says what "off" means for each):

(a) a single-row invoice update (`save(update_fields=...)`) and a create
    (`Invoice.objects.create(...)`), each in its own transaction with request context bound:
    ours, capture off, django-pghistory (no context; with context as a foreign key, its
    default; with context denormalized, its recommended fast form), django-auditlog,
    django-simple-history;
(b) `QuerySet.update()`, `bulk_update()` and `bulk_create()` of 1,000 invoices: ours, off,
    pghistory (row- and statement-level triggers, and with context), and a hand-written
    set-based `INSERT ... SELECT` of the audit rows as a reference; queries counted;
(c) where our capture's time goes in (a) (database time per statement, Python time by
    function under cProfile);
then on a trail of BENCH_AUDIT_ROWS rows (1M): (d) the update, ours against off; (e) newest-50
pages through the API; (f) the CSV export, rows/s and peak RSS (child process); (g) the
retention cleanup of the older half, and the p99 of audited writes meanwhile.

Environment: BENCH_ROUNDS (7), BENCH_OPS (400 single-row operations per variant and round),
BENCH_BULK_ROWS (1000), BENCH_BULK_ROUNDS (5), BENCH_BULK_REPEATS (2 calls per round),
BENCH_AUDIT_ROWS (1,000,000).
"""

import cProfile
import datetime
import os
import pstats
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from decimal import Decimal
from itertools import count

from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.pagination import Cursor

from bench import capture
from bench.capture import (
    AuditLog,
    Invoice,
    NewestFirstCursor,
    User,
    cleanup_audit_logs,
    create_auth_token,
    create_invoice,
    partitions,
    seal_audit_log,
)
from bench.common import (
    ROOT,
    archive_storage,
    compare_runs,
    env_int,
    interleaved,
    print_comparison,
    print_table,
    scratch_database,
    summary_ms,
    write_results,
)

ROUNDS = env_int("BENCH_ROUNDS", 7)
OPS = env_int("BENCH_OPS", 400)
BULK_ROWS = env_int("BENCH_BULK_ROWS", 1000)
BULK_ROUNDS = env_int("BENCH_BULK_ROUNDS", 5)
BULK_REPEATS = env_int("BENCH_BULK_REPEATS", 2)
ROWS = env_int("BENCH_AUDIT_ROWS", 1_000_000)
DUE = datetime.date(2030, 1, 1)
_serial = count(1)  # invoice sequences and distinct values, unique across the run


# (a) single rows ---------------------------------------------------------------------------


def _update_run(invoice_id: int, actor: User, variant: capture.Variant) -> float:
    """Mean seconds of one update, each in its own transaction with its context bound."""
    invoice = Invoice.objects.get(pk=invoice_id)  # loaded as configured: our snapshot, or not
    started = time.perf_counter()
    for _ in range(OPS):
        with variant.context(actor), transaction.atomic():
            invoice.client_name = f"Client {next(_serial)}"
            invoice.save(update_fields=["client_name", "updated_at"])
    return (time.perf_counter() - started) / OPS


def _new_invoice(actor: User, serial: int) -> Invoice:
    return Invoice(
        user=actor,
        number=f"B-{serial}",
        year=2031,
        sequence=serial,
        client_name=f"Client {serial}",
        client_email="client@example.com",
        due_date=DUE,
        subtotal=Decimal("100.00"),
        total=Decimal("100.00"),
    )


def _create_run(actor: User, variant: capture.Variant) -> float:
    started = time.perf_counter()
    for _ in range(OPS):
        serial = next(_serial)
        with variant.context(actor), transaction.atomic():
            _new_invoice(actor, serial).save(force_insert=True)  # as objects.create() does
    return (time.perf_counter() - started) / OPS


def check_variants(invoice_id: int, actor: User, variants: list[capture.Variant]) -> dict:
    """Before measuring: each variant writes one record per update and per create to its own
    store and nothing anywhere else ("capture off" writes none), with its context attached."""
    checks = {}
    for variant in variants:
        variant.configure()
        before = capture.store_counts()
        invoice = Invoice.objects.get(pk=invoice_id)
        with variant.context(actor), transaction.atomic():
            invoice.client_name = f"Client {next(_serial)}"
            invoice.save(update_fields=["client_name", "updated_at"])
        with variant.context(actor), transaction.atomic():
            _new_invoice(actor, next(_serial)).save()
        after = capture.store_counts()
        grown = capture.grown(before, after)
        expected = {variant.store: 2} if variant.store else {}
        assert grown == expected, (variant.name, grown)
        context = capture.newest_record_context(variant)
        assert variant.context is capture.OFF.context or (context and any(context)), variant.name
        checks[variant.name] = {"records_written": grown, "context": str(context)}
    if variants:
        capture.all_off()
    return checks


def bench_single_rows(actor: User) -> dict:
    invoice = create_invoice(
        actor,
        client_name="Client",
        client_email="client@example.com",
        due_date=DUE,
        items=[{"description": "Work", "quantity": Decimal(1), "unit_price": Decimal(100)}],
    )
    variants = capture.SINGLE_ROW_VARIANTS
    result = {"checks": check_variants(invoice.pk, actor, variants)}
    runs = interleaved(variants, lambda v: _update_run(invoice.pk, actor, v), rounds=ROUNDS)
    result["update"] = compare_runs(runs, capture.OFF.name)
    print_comparison(
        f"(a) single-row update, own transaction, context bound: mean ms per update "
        f"over {OPS} per run, {ROUNDS} runs",
        result["update"],
    )
    runs = interleaved(variants, lambda v: _create_run(actor, v), rounds=ROUNDS)
    result["create"] = compare_runs(runs, capture.OFF.name)
    print_comparison("    create, own transaction, context bound", result["create"])
    capture.all_off()
    return result


# (b) bulk ----------------------------------------------------------------------------------

REFERENCE = capture.Variant("off + set-based INSERT ... SELECT (reference)")
_HAS_ORIGIN = "origin" in {f.name for f in AuditLog._meta.concrete_fields}
_AUDIT_COLUMNS = (
    "action, category, description, user_id, user_email, resource_type, resource_id, "
    "ip_address, user_agent, method, path, request_id, "
    + ("origin, " if _HAS_ORIGIN else "")
    + "metadata, success, digest"
)
_CONTEXT_VALUES = (
    "%(uid)s, %(email)s, 'invoice', {id}::text, %(ip)s::inet, %(ua)s, 'PATCH', %(path)s, 'bench'"
    + (", 'api'" if _HAS_ORIGIN else "")
)


def _reference_params(actor: User) -> dict:
    return {
        "uid": actor.pk,
        "email": actor.email,
        "ip": "203.0.113.7",
        "ua": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "path": "/api/invoices/",
    }


def _reference_update_sql() -> str:
    """QuerySet.update(client_name=...) and its audit rows, old and new values, one statement.
    The digest is an md5 stand-in: the product's is an HMAC computed in Python."""
    invoices, audit = Invoice._meta.db_table, AuditLog._meta.db_table
    context = _CONTEXT_VALUES.format(id="id")
    return f"""
        WITH old AS (
            SELECT id, client_name FROM {invoices} WHERE user_id = %(owner)s FOR UPDATE
        ), changed AS (
            UPDATE {invoices} AS i SET client_name = %(value)s FROM old WHERE i.id = old.id
            RETURNING i.id, i.number, old.client_name AS old_value, i.client_name AS new_value
        )
        INSERT INTO {audit} ({_AUDIT_COLUMNS})
        SELECT 'invoice.updated', 'invoice', %(email)s || ' updated invoice ' || number,
            {context},
            jsonb_build_object('changes', jsonb_build_object(
                'client_name', jsonb_build_array(old_value, new_value))),
            true, md5(id::text || new_value) || md5(number)
        FROM changed WHERE old_value IS DISTINCT FROM new_value
    """


def _reference_bulk_update_sql() -> str:
    invoices, audit = Invoice._meta.db_table, AuditLog._meta.db_table
    context = _CONTEXT_VALUES.format(id="i.id")
    return f"""
        INSERT INTO {audit} ({_AUDIT_COLUMNS})
        SELECT 'invoice.updated', 'invoice', %(email)s || ' updated invoice ' || i.number,
            {context},
            jsonb_build_object('changes', jsonb_build_object(
                'client_name', jsonb_build_array(o.old_value, i.client_name))),
            true, md5(i.id::text || i.client_name) || md5(i.number)
        FROM {invoices} AS i
        JOIN unnest(%(ids)s::bigint[], %(old)s::text[]) AS o(id, old_value) ON o.id = i.id
        WHERE i.client_name IS DISTINCT FROM o.old_value
    """


def _reference_created_sql() -> str:
    invoices, audit = Invoice._meta.db_table, AuditLog._meta.db_table
    context = _CONTEXT_VALUES.format(id="i.id")
    return f"""
        INSERT INTO {audit} ({_AUDIT_COLUMNS})
        SELECT 'invoice.created', 'invoice', %(email)s || ' created invoice ' || i.number,
            {context}, jsonb_build_object('changes', to_jsonb(i)), true,
            md5(i.id::text) || md5(i.number)
        FROM {invoices} AS i WHERE i.id = ANY(%(ids)s::bigint[])
    """


def _bulk_update_call(owner: User, actor: User, variant) -> float:
    value = f"Bulk {next(_serial)}"
    started = time.perf_counter()
    with variant.context(actor), transaction.atomic():
        if variant is REFERENCE:
            with connection.cursor() as cursor:
                params = {**_reference_params(actor), "owner": owner.pk, "value": value}
                cursor.execute(_reference_update_sql(), params)
        else:
            Invoice.objects.filter(user=owner).update(client_name=value)
    return time.perf_counter() - started


def _bulk_update_objects_call(owner: User, actor: User, variant) -> float:
    objs = list(Invoice.objects.filter(user=owner))  # loaded as configured, before the timing
    old = [obj.client_name for obj in objs]
    started = time.perf_counter()
    with variant.context(actor), transaction.atomic():
        for obj in objs:
            obj.client_name = f"Bulk {next(_serial)}"
        Invoice.objects.bulk_update(objs, ["client_name"])
        if variant is REFERENCE:
            with connection.cursor() as cursor:
                ids = [obj.pk for obj in objs]
                params = {**_reference_params(actor), "ids": ids, "old": old}
                cursor.execute(_reference_bulk_update_sql(), params)
    return time.perf_counter() - started


def _bulk_create_call(owner: User, actor: User, variant) -> float:
    started = time.perf_counter()
    with variant.context(actor), transaction.atomic():
        objs = [_new_invoice(owner, next(_serial)) for _ in range(BULK_ROWS)]
        created = Invoice.objects.bulk_create(objs)
        if variant is REFERENCE:
            with connection.cursor() as cursor:
                ids = [obj.pk for obj in created]
                cursor.execute(_reference_created_sql(), {**_reference_params(actor), "ids": ids})
    return time.perf_counter() - started


def bench_bulk(actor: User) -> dict:
    owner = User.objects.create_user("bulk@example.com", "bench-password-1")
    creator = User.objects.create_user("creator@example.com", "bench-password-1")
    capture.all_off()
    Invoice.objects.bulk_create(_new_invoice(owner, next(_serial)) for _ in range(BULK_ROWS))
    variants = [*capture.BULK_VARIANTS, REFERENCE]
    calls = {
        f"QuerySet.update() of {BULK_ROWS:,}": lambda v: _bulk_update_call(owner, actor, v),
        f"bulk_update() of {BULK_ROWS:,}": lambda v: _bulk_update_objects_call(owner, actor, v),
        f"bulk_create() of {BULK_ROWS:,}": lambda v: _bulk_create_call(creator, actor, v),
    }
    result = {}
    for title, call in calls.items():
        # Queries and records of one call per variant, outside the timing.
        queries, records = {}, {}
        for variant in variants:
            variant.configure()
            before = capture.store_counts()
            with CaptureQueriesContext(connection) as captured:
                call(variant)
            after = capture.store_counts()
            queries[variant.name] = len(captured)
            records[variant.name] = capture.grown(before, after)
        runs = interleaved(
            variants,
            lambda v, call=call: statistics.fmean(call(v) for _ in range(BULK_REPEATS)),
            rounds=BULK_ROUNDS,
        )
        result[title] = compare_runs(runs, capture.OFF.name)
        for name in result[title]:
            result[title][name]["queries"] = queries[name]
            result[title][name]["records_written"] = records[name]
        print_table(
            f"(b) {title}, own transaction, context bound: ms per call, "
            f"{BULK_REPEATS} calls per run, {BULK_ROUNDS} runs",
            ["variant", "min ms", "median ms", "x off", "queries", "records"],
            [
                [n, v["min"], v["median"], v["ratio_to_off"], v["queries"], v["records_written"]]
                for n, v in result[title].items()
            ],
        )
    capture.all_off()
    return result


# (c) where the time goes -------------------------------------------------------------------


class _StatementTimer:
    """An execute wrapper (innermost) that adds up the database time of each statement."""

    def __init__(self):
        self.seconds = 0.0
        self.commit_seconds = 0.0
        self.statements = 0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.statements += 1

    @contextmanager
    def installed(self):
        """Also the COMMIT, which Django sends outside the cursor."""
        commit = connection._commit

        def timed_commit():
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self.commit_seconds += time.perf_counter() - started

        connection.execute_wrappers.append(self)
        connection._commit = timed_commit
        try:
            yield self
        finally:
            connection.execute_wrappers.remove(self)
            del connection._commit


def profile_single_update(actor: User, count: int = 3000) -> dict:
    invoice = Invoice.objects.create(
        user=actor, number="P-1", year=2032, sequence=1, client_name="P",
        client_email="client@example.com", due_date=DUE,
    )  # fmt: skip
    split = {}
    for variant in (capture.OFF, capture.OURS, capture.OFF, capture.OURS):  # the second counts
        variant.configure()
        with _StatementTimer().installed() as timer:
            total = _timed_updates(invoice.pk, actor, variant, count)
        database = timer.seconds + timer.commit_seconds
        split[variant.name] = {
            "total_us": round(total / count * 1e6, 1),
            "statements_us": round(timer.seconds / count * 1e6, 1),
            "commit_us": round(timer.commit_seconds / count * 1e6, 1),
            "python_us": round((total - database) / count * 1e6, 1),
            "statements": round(timer.statements / count, 2),  # COMMIT not counted
        }
    capture.OURS.configure()
    profiler = cProfile.Profile()
    invoice = Invoice.objects.get(pk=invoice.pk)
    profiler.enable()
    for _ in range(count):
        with capture.our_context(actor), transaction.atomic():
            invoice.client_name = f"Client {next(_serial)}"
            invoice.save(update_fields=["client_name", "updated_at"])
    profiler.disable()
    capture.all_off()
    stats = pstats.Stats(profiler)
    ours = []
    root = str(ROOT) + "/"
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        # The product's own code: the audit package and whatever it calls in the project.
        if path.startswith(root) and not path.startswith((root + "bench/", root + ".venv/")):
            where = f"{path.removeprefix(root)}:{line} {name}"
            ours.append((cumtime / count * 1e6, tottime / count * 1e6, calls / count, where))
    ours.sort(reverse=True)
    split["cprofile_ours_per_update"] = [
        {"function": w, "cumulative_us": round(c, 1), "own_us": round(t, 1), "calls": round(n, 2)}
        for c, t, n, w in ours[:15]
    ]
    print_table(
        f"(c) one audited update, split ({count:,} updates; the second pass of each)",
        ["variant", "total us", "statements us", "COMMIT us", "python us", "statements"],
        [
            [n, v["total_us"], v["statements_us"], v["commit_us"], v["python_us"], v["statements"]]
            for n, v in split.items()
            if isinstance(v, dict)
        ],
    )
    print_table(
        "    our functions under cProfile (inflated by the profiler; for their order)",
        ["function", "cumulative us", "own us", "calls/update"],
        [
            [r["function"], r["cumulative_us"], r["own_us"], r["calls"]]
            for r in split["cprofile_ours_per_update"]
        ],
    )
    return split


def _timed_updates(invoice_id: int, actor: User, variant, count: int) -> float:
    invoice = Invoice.objects.get(pk=invoice_id)
    started = time.perf_counter()
    for _ in range(count):
        with variant.context(actor), transaction.atomic():
            invoice.client_name = f"Client {next(_serial)}"
            invoice.save(update_fields=["client_name", "updated_at"])
    return time.perf_counter() - started


# (d)-(g) on a large trail ------------------------------------------------------------------

# Ids grow with time, as in a real trail: the older half spread over 800 to 400 days ago, the
# younger over the last 300 days up to a minute ago, whatever the number of rows. One entry in
# 20 comes from a task, the others from the API (if the trail has an `origin` column).
FILL_SQL = """
INSERT INTO audit_auditlog (action, category, description, user_id, user_email, resource_type,
    resource_id, ip_address, user_agent, method, path, request_id, metadata, success,
    created_at, digest{origin_column})
SELECT (ARRAY['invoice.created','invoice.updated','user.login','payment.processed'])[1 + g %% 4],
    'invoice', 'bench entry', 1 + g %% 1000, 'user' || (g %% 1000) || '@example.com', 'invoice',
    (g %% 50000)::text, ('10.0.' || (g %% 250) || '.' || (g %% 200))::inet, 'bench', 'POST',
    '/api/invoices/', md5(g::text), '{{"changes": {{"status": ["draft", "finalized"]}}}}'::jsonb,
    g %% 10 <> 0,
    CASE WHEN g <= %(old)s
        THEN now() - interval '800 days' + (g - 1) * (interval '400 days' / %(old)s)
        ELSE now() - interval '300 days'
            + (g - %(old)s) * ((interval '300 days' - interval '1 minute') / (%(rows)s - %(old)s))
        END,
    md5(g::text) || md5((g + 1)::text){origin_value}
FROM generate_series(1, %(rows)s) AS g
"""


def _fill_sql() -> str:
    return FILL_SQL.format(
        origin_column=", origin" if _HAS_ORIGIN else "",
        origin_value=(
            ",\n    CASE WHEN g %% 20 = 0 THEN 'task' ELSE 'api' END" if _HAS_ORIGIN else ""
        ),
    )


_SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = 'audit_auditlog'
    AND indexname NOT IN (
        SELECT conname FROM pg_constraint WHERE conrelid = 'audit_auditlog'::regclass)
"""


def fill(rows: int, *, sql: str | None = None) -> float:
    """Load `rows` entries into an empty trail of a scratch database (by FILL_SQL, or `sql`
    with the same parameters). Its secondary indexes are dropped for the load and built again
    after it, as they were (a bulk build is several times faster than maintaining them row by
    row), then VACUUM ANALYZE as autovacuum would."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        if partitions.is_partitioned():  # the months FILL_SQL spreads its rows over
            today = datetime.date.today()
            first = today - datetime.timedelta(days=801)
            cursor.execute("SELECT * FROM audit_add_partitions(%s, %s)", [first, today])
        cursor.execute(_SECONDARY_INDEXES)
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute(sql or _fill_sql(), {"rows": rows, "old": rows // 2})
        for _, definition in indexes:
            # A partitioned index reads "ON ONLY" the parent: built so, no partition gets it.
            cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("VACUUM ANALYZE audit_auditlog")
    return time.perf_counter() - started


def bench_updates_on_large_trail(actor: User) -> dict:
    invoice = Invoice.objects.create(
        user=actor, number="L-1", year=2033, sequence=1, client_name="L",
        client_email="client@example.com", due_date=DUE,
    )  # fmt: skip
    variants = [capture.OFF, capture.OURS]
    runs = interleaved(variants, lambda v: _update_run(invoice.pk, actor, v), rounds=ROUNDS)
    result = compare_runs(runs, capture.OFF.name)
    print_comparison(f"(d) single-row update on a trail of {ROWS:,} rows", result)
    capture.OURS.configure()
    return result


def _timed_get(client, url: str, token: str | None, count: int) -> list[float]:
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, **headers)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return times


def bench_pages(staff: User, count: int = 200) -> dict:
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    token = create_auth_token(staff)
    client = capture.api_client(audit=True)
    newest = AuditLog.objects.order_by("-id").values_list("id", flat=True).first()
    paginator = NewestFirstCursor()
    paginator.base_url = "/api/audit/logs/"
    halfway = str(newest - ROWS // 2)
    deep = paginator.encode_cursor(Cursor(offset=0, reverse=False, position=halfway))
    urls = {
        "first page": "/api/audit/logs/",
        "deep page (half-way down)": deep.replace("http://testserver", ""),
        "filtered by user": "/api/audit/logs/?user=7",
        "by resource": "/api/audit/resource/invoice/1234/logs/",
        "failures only": "/api/audit/logs/?success=false",
    }
    result = {}
    for _ in range(2):  # warm-up, then measure
        result = {
            name: summary_ms(_timed_get(client, url, token, count)) for name, url in urls.items()
        }
    print_table(
        f"(e) GET newest 50 through the API, {AuditLog.objects.count():,} rows",
        ["page", "p50 ms", "p95 ms"],
        [[n, v["p50_ms"], v["p95_ms"]] for n, v in result.items()],
    )
    admin = capture.api_client(audit=True)
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
        "    the same trail in the Django admin",
        ["page", "p50 ms", "p95 ms"],
        [[n, v["p50_ms"], v["p95_ms"]] for n, v in result["admin"].items()],
    )
    return result


def _writer(invoice_id: int, actor: User, stop: threading.Event, times: list[float]) -> None:
    try:
        invoice = Invoice.objects.get(pk=invoice_id)
        while not stop.is_set():
            started = time.perf_counter()
            with capture.our_context(actor), transaction.atomic():
                invoice.client_name = f"Client {next(_serial)}"
                invoice.save(update_fields=["client_name", "updated_at"])
            times.append(time.perf_counter() - started)
    finally:
        connections.close_all()


def bench_cleanup(invoice_id: int, actor: User) -> dict:
    capture.OURS.configure()
    started = time.perf_counter()
    while seal_audit_log(max_rows=10_000):  # as the beat seals: small ranges
        pass
    seal_seconds = time.perf_counter() - started
    baseline, stop = [], threading.Event()
    writer = threading.Thread(target=_writer, args=(invoice_id, actor, stop, baseline))
    writer.start()
    time.sleep(3)
    stop.set()
    writer.join()

    during, stop = [], threading.Event()
    writer = threading.Thread(target=_writer, args=(invoice_id, actor, stop, during))
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
        f"(g) cleanup of {result.deleted:,} rows in batches of 10,000",
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
        "(f) CSV export through the API",
        ["figure", "value"],
        [[k, f"{v:,}" if isinstance(v, int) else v] for k, v in result.items()],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_audit needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    results = {
        "rounds": ROUNDS,
        "ops_per_run": OPS,
        "bulk_rows": BULK_ROWS,
        "bulk_rounds": BULK_ROUNDS,
        "bulk_calls_per_run": BULK_REPEATS,
    }
    with scratch_database():
        actor = User.objects.create_user("owner@example.com", "bench-password-1")
        results["single_row"] = bench_single_rows(actor)
        results["bulk"] = bench_bulk(actor)
        results["profile"] = profile_single_update(actor)
    capture.OURS.configure()
    if ROWS:
        with scratch_database(), archive_storage():
            print(f"\nfilling {ROWS:,} audit rows ...", flush=True)
            results |= {"rows": ROWS, "fill_seconds": round(fill(ROWS), 1)}
            actor = User.objects.create_user("owner@example.com", "bench-password-1")
            staff = User.objects.create_user("staff@example.com", "x-bench-pw-1", is_staff=True)
            results["updates_on_large_trail"] = bench_updates_on_large_trail(actor)
            results["pages"] = bench_pages(staff)
            results["export"] = bench_export(staff)
            invoice = Invoice.objects.filter(user=actor).first()
            results["cleanup"] = bench_cleanup(invoice.pk, actor)
    write_results("audit", results)
