"""The audit trail at scale, monthly partitions against one table, side by side in one run.

Two scratch databases hold the same trail of BENCH_TRAIL_ROWS entries (10M), loaded with
COPY from bench_audit's FILL_SQL (the same rows: ids grow with time over 800 days):

- "one table": migrated, then made one plain table again by what migration 0007 undoes
  (audit/partitions.py `unpartition`), every other table and column as shipped;
- "monthly partitions": migrated as shipped, and `audit_add_partitions()` called for every
  month of the data before the load, so that each row lands in its month (the default
  partition is checked empty after it).

The load drops the secondary indexes and builds them again after it (on the partitioned table,
on every partition at once), then VACUUM ANALYZE, as bench_audit's fill() does; its seconds
are recorded per variant, split into COPY, index builds and vacuum.

Then BENCH_TRAIL_ROUNDS rounds (5, after a warm-up round that is thrown away) alternate
between the two databases, the order rotated (bench/common.py `interleaved`); the connection
is closed and opened on the other database between turns, and a few untimed calls of each
kind open each turn, so that reconnecting and replanning are not part of the figures. Each
turn measures, with our capture on:

1. the audited single-row invoice update (bench_audit (d)): mean ms of BENCH_TRAIL_UPDATES
   (400) updates, each in its own transaction with its context bound; target: partitioned
   within +-10% of one table;
2. the API's newest page (`GET /api/audit/logs/`, staff token): p95 of BENCH_TRAIL_REQUESTS
   (200); target p95 <= 15 ms;
3. a cursor page half-way down the trail, built as bench_audit's bench_pages builds it: p95,
   and its ratio to the first page's within the turn; target <= 1.5x;
4. the admin changelist of the trail (logged-in superuser): p95 of BENCH_TRAIL_ADMIN_REQUESTS
   (40); target p95 <= 250 ms.

Min and median across rounds of each, and the partitioned figure over the one-table figure
(median of the per-round ratios, and the ratio of the minima). Beside them: bytes per entry
on disk, heap (with TOAST, free-space and visibility maps) and indexes apart, summed over
every partition; the number of partitions; and, after the rounds, the plans of the two page
queries (planning and execution ms, relations read).

Environment: BENCH_TRAIL_ROWS (10,000,000), BENCH_TRAIL_ROUNDS (5), BENCH_TRAIL_UPDATES (400),
BENCH_TRAIL_REQUESTS (200), BENCH_TRAIL_ADMIN_REQUESTS (40). Both trails are on disk at once,
some 0.6 kB per entry each (12 GB for two of 10M), plus the write-ahead log and the index
builds' sort files while they last.
"""

import datetime
import json
import re
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from rest_framework.pagination import Cursor

from audit import partitions
from bench import capture
from bench.bench_audit import _SECONDARY_INDEXES, _fill_sql, _timed_get
from bench.capture import AuditLog, Invoice, NewestFirstCursor, User, create_auth_token
from bench.common import (
    env_int,
    interleaved,
    percentile,
    print_table,
    print_verdicts,
    write_results,
)

ROWS = env_int("BENCH_TRAIL_ROWS", 10_000_000)
ROUNDS = env_int("BENCH_TRAIL_ROUNDS", 5)
UPDATES = env_int("BENCH_TRAIL_UPDATES", 400)
REQUESTS = env_int("BENCH_TRAIL_REQUESTS", 200)
ADMIN_REQUESTS = env_int("BENCH_TRAIL_ADMIN_REQUESTS", 40)
WARMUP_CALLS = 5  # per kind and turn, untimed: the turn starts on a new connection
PROGRESS_ROWS = 1_000_000
DUE = datetime.date(2030, 1, 1)
ENTRIES = AuditLog._meta.db_table
ONE, MONTHLY = "one table", "monthly partitions"
TARGETS = {
    "update_ratio": (0.9, 1.1),
    "first_page_p95_ms": 15,
    "deep_to_first_p95": 1.5,
    "admin_p95_ms": 250,
}


# Two scratch databases -----------------------------------------------------------------------


def _use(database: str) -> None:
    """Point the default connection at another database: closed here, it opens on the new one
    at its next query (the test client runs in this thread, on this same connection)."""
    connection.close()
    connection.settings_dict["NAME"] = database
    settings.DATABASES[connection.alias]["NAME"] = database


@contextmanager
def scratch_databases(suffixes: list[str]):
    """Fresh, migrated databases beside the configured one, `<test name>_<suffix>` each (as
    bench/common.py `scratch_database`, several at once); yields their names, and leaves the
    connection on the last one."""
    old_name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    old_test_name = test.get("NAME")
    base = connection.creation._get_test_db_name()
    made = []
    try:
        for suffix in suffixes:
            test["NAME"] = f"{base}_{suffix}"
            made.append(
                connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            )
        yield made
    finally:
        test["NAME"] = old_test_name
        for name in made:
            _use(name)
            connection.creation.destroy_test_db(old_name, verbosity=0)


def _scalar(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _is_partitioned() -> bool:
    return _scalar("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", [ENTRIES])


def make_one_table() -> None:
    """What migration 0007 undoes, on the schema as shipped (migrating back before it would
    drop the tables and columns added since, which the code writes to)."""
    with connection.schema_editor() as editor:
        partitions.unpartition(apps, editor)
    assert not _is_partitioned()


def add_months(first: datetime.date, last: datetime.date) -> int:
    """The monthly partitions from `first` to `last`; how many were added."""
    assert _is_partitioned()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_add_partitions(%s, %s)", [first, last])
        added, outside = cursor.fetchone()
    assert outside == 0, outside
    return added


# The load --------------------------------------------------------------------------------


def _copy_sql(rows: int) -> tuple[str, str]:
    """bench_audit's FILL_SQL as a column list and a SELECT of the rows from `first` to `last`
    of the series (the times and shares of each row depend on `rows`, not on the part)."""
    match = re.fullmatch(
        rf"\s*INSERT INTO {ENTRIES} \((?P<columns>[^)]*)\)\s*(?P<select>SELECT .*)",
        _fill_sql(),
        flags=re.DOTALL,
    )
    assert match, "bench_audit.FILL_SQL is no longer INSERT INTO ... SELECT"
    series = "generate_series(1, %(rows)s)"
    assert series in match["select"], "bench_audit.FILL_SQL no longer reads generate_series"
    select = match["select"].replace(series, "generate_series(%(first)s, %(last)s)")
    columns = " ".join(match["columns"].split())
    return columns, select.replace("%(rows)s", str(rows)).replace("%(old)s", str(rows // 2))


def _source() -> psycopg.Connection:
    """A second session for the rows' side of the COPY (one session runs one COPY at a time)."""
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


def copy_rows(rows: int) -> float:
    """COPY ... TO STDOUT of the generated rows, in parts, streamed into COPY ... FROM STDIN.
    The parts are read in one transaction: now(), hence every time, is the same for all."""
    columns, select = _copy_sql(rows)
    part = min(PROGRESS_ROWS, max(1, -(-rows // 4)))
    started = time.perf_counter()
    connection.ensure_connection()
    with (
        _source() as source,
        source.cursor() as out_cursor,
        connection.connection.cursor() as in_cursor,
        in_cursor.copy(f"COPY {ENTRIES} ({columns}) FROM STDIN") as into,
    ):
        for first in range(1, rows + 1, part):
            last = min(rows, first + part - 1)
            sql = select % {"first": first, "last": last}
            with out_cursor.copy(f"COPY ({sql}) TO STDOUT") as out:
                for data in out:
                    into.write(data)
            elapsed = time.perf_counter() - started
            print(
                f"  {last:>12,} rows  {elapsed:7.1f} s  {last / elapsed:9,.0f} rows/s", flush=True
            )
    return time.perf_counter() - started


def fill(rows: int) -> dict:
    """Load `rows` entries by COPY, the secondary indexes dropped meanwhile and built after,
    then VACUUM ANALYZE (as bench_audit's fill())."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(_SECONDARY_INDEXES)
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')  # a partitioned index takes its partitions'
    copy_seconds = copy_rows(rows)
    built = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            # pg_indexes shows a partitioned index as ON ONLY the parent: built so, it would be
            # invalid and have no index on any partition.
            cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
        cursor.execute("RESET maintenance_work_mem")
        index_seconds = time.perf_counter() - built
        cursor.execute(f"VACUUM ANALYZE {ENTRIES}")
        cursor.execute(
            "SELECT count(*) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisvalid",
            [ENTRIES],
        )
        assert cursor.fetchone()[0] == 0, "an index of the trail is not valid"
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "copy_seconds": round(copy_seconds, 1),
        "index_seconds": round(index_seconds, 1),
        "vacuum_analyze_seconds": round(seconds - copy_seconds - index_seconds, 1),
        "rows_per_s": round(rows / seconds),
        "copy_rows_per_s": round(rows / copy_seconds),
        "secondary_indexes": len(indexes),
    }


# pg_partition_tree() lists nothing for a plain table: then the table alone.
_SIZES = f"""
WITH leaves AS (
    SELECT relid, level FROM pg_partition_tree('{ENTRIES}') WHERE isleaf
    UNION ALL
    SELECT '{ENTRIES}'::regclass, 0 WHERE NOT EXISTS (SELECT FROM pg_partition_tree('{ENTRIES}'))
)
SELECT count(*) FILTER (WHERE level > 0), sum(pg_relation_size(relid)),
    sum(pg_table_size(relid)), sum(pg_indexes_size(relid)), sum(pg_total_relation_size(relid))
FROM leaves
"""


def disk() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {ENTRIES}")
        (rows,) = cursor.fetchone()
        cursor.execute(_SIZES)
        partitions, heap, table, indexes, total = map(int, cursor.fetchone())
    return {
        "rows": rows,
        "partitions": partitions,
        "heap_bytes_per_entry": round(heap / rows, 1),
        "table_bytes_per_entry": round(table / rows, 1),  # heap + TOAST + maps
        "index_bytes_per_entry": round(indexes / rows, 1),
        "total_bytes_per_entry": round(total / rows, 1),
        "total_mb": round(total / 2**20, 1),
    }


# The rounds ------------------------------------------------------------------------------


@dataclass
class Trail:
    name: str
    database: str
    invoice_id: int = 0
    actor: User | None = None
    token: str = ""
    deep_url: str = ""
    api: object = None
    admin: object = None
    facts: dict = field(default_factory=dict)

    def configure(self) -> None:
        _use(self.database)
        capture.OURS.configure()


def prepare(trail: Trail) -> None:
    """The users, invoice, token and clients of a trail, made after the load (their entries
    are the newest)."""
    capture.OURS.configure()
    actor = User.objects.create_user("owner@example.com", "bench-password-1")
    staff = User.objects.create_user(
        "staff@example.com", "x-bench-pw-1", is_staff=True, is_superuser=True
    )
    invoice = Invoice.objects.create(
        user=actor, number="S-1", year=2033, sequence=1, client_name="S",
        client_email="client@example.com", due_date=DUE,
    )  # fmt: skip
    newest = AuditLog.objects.order_by("-id").values_list("id", flat=True).first()
    paginator = NewestFirstCursor()
    paginator.base_url = "/api/audit/logs/"
    halfway = str(newest - ROWS // 2)
    deep = paginator.encode_cursor(Cursor(offset=0, reverse=False, position=halfway))
    trail.actor, trail.invoice_id, trail.token = actor, invoice.pk, create_auth_token(staff)
    trail.deep_url = deep.replace("http://testserver", "")
    trail.api = capture.api_client(audit=True)
    trail.admin = capture.api_client(audit=True)
    trail.admin.force_login(staff)


def _updates(trail: Trail, count: int) -> float:
    invoice = Invoice.objects.get(pk=trail.invoice_id)
    started = time.perf_counter()
    for serial in range(count):
        with capture.our_context(trail.actor), transaction.atomic():
            invoice.client_name = f"Client {serial} {time.perf_counter_ns()}"
            invoice.save(update_fields=["client_name", "updated_at"])
    return time.perf_counter() - started


def turn(trail: Trail) -> dict:
    """One trail's figures in one round."""
    _updates(trail, WARMUP_CALLS)
    update_ms = _updates(trail, UPDATES) / UPDATES * 1000
    pages = {}
    for name, client, url, token, count in (
        ("first", trail.api, "/api/audit/logs/", trail.token, REQUESTS),
        ("deep", trail.api, trail.deep_url, trail.token, REQUESTS),
        ("admin", trail.admin, "/admin/audit/auditlog/", None, ADMIN_REQUESTS),
    ):
        _timed_get(client, url, token, WARMUP_CALLS)
        times = _timed_get(client, url, token, count)
        pages[name] = percentile(times, 95) * 1000
    return {
        "update_ms": update_ms,
        "first_page_p95_ms": pages["first"],
        "deep_page_p95_ms": pages["deep"],
        "deep_to_first_p95": pages["deep"] / pages["first"],
        "admin_p95_ms": pages["admin"],
    }


def _summary(values: list[float], base: list[float] | None) -> dict:
    figures = {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "per_round": [round(value, 3) for value in values],
    }
    if base is not None:
        ratios = [value / other for value, other in zip(values, base, strict=True)]
        figures["x_one_table"] = round(statistics.median(ratios), 3)
        figures["x_one_table_minima"] = round(min(values) / min(base), 3)
    return figures


def compare(runs: dict[str, list[dict]]) -> dict:
    """{figure: {trail: min, median, per round, and (partitioned) x one table}}."""
    result = {}
    for figure in runs[ONE][0]:
        base = [run[figure] for run in runs[ONE]]
        result[figure] = {
            name: _summary([run[figure] for run in values], None if name == ONE else base)
            for name, values in runs.items()
        }
    return result


# Plans -----------------------------------------------------------------------------------


def _relations(plan: dict) -> set[str]:
    names = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        names |= _relations(child)
    return names


def plans(halfway: int) -> dict:
    """The API's page queries (its ORDER BY and LIMIT, the cursor's id condition) as the
    database runs them: a partitioned trail cannot prune by id, so each plans and reads every
    month's partition."""
    limit = NewestFirstCursor.page_size + 1  # a cursor page reads one more, for "next"
    queries = {
        "first page": AuditLog.objects.order_by("-id")[:limit],
        "deep page": AuditLog.objects.filter(id__lt=halfway).order_by("-id")[:limit],
    }
    result = {}
    for name, queryset in queries.items():
        for _ in range(2):  # the second, on a warm catalog cache, as in a running server
            (plan,) = json.loads(queryset.explain(format="json", analyze=True, buffers=True))
        result[name] = {
            "planning_ms": round(plan["Planning Time"], 3),
            "execution_ms": round(plan["Execution Time"], 3),
            "relations_read": len(_relations(plan["Plan"])),
            "top_node": plan["Plan"]["Node Type"],
            "shared_buffers_hit_read": [
                plan["Plan"].get("Shared Hit Blocks"),
                plan["Plan"].get("Shared Read Blocks"),
            ],
        }
    return result


def server_facts() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'), current_setting('shared_buffers'),"
            " current_setting('work_mem'), current_setting('max_wal_size'),"
            " current_setting('max_parallel_maintenance_workers')"
        )
        version, shared_buffers, work_mem, max_wal_size, workers = cursor.fetchone()
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {
        "postgresql": version,
        "shared_buffers": shared_buffers,
        "work_mem": work_mem,
        "max_wal_size": max_wal_size,
        "max_parallel_maintenance_workers": workers,
        "memory_gb": round(total_kb / 2**20, 1),
    }


# The run ---------------------------------------------------------------------------------


def _print_figures(result: dict) -> None:
    titles = {
        "update_ms": f"audited single-row update, mean ms over {UPDATES}",
        "first_page_p95_ms": f"API newest page, p95 ms of {REQUESTS}",
        "deep_page_p95_ms": f"API cursor page half-way down, p95 ms of {REQUESTS}",
        "deep_to_first_p95": "deep page p95 / first page p95 (same turn)",
        "admin_p95_ms": f"admin changelist, p95 ms of {ADMIN_REQUESTS}",
    }
    rows = []
    for figure, title in titles.items():
        for name, values in result[figure].items():
            rows.append(
                [
                    f"{title}: {name}" if name == ONE else f"{'':>{len(title)}}  {name}",
                    values["min"],
                    values["median"],
                    values.get("x_one_table", ""),
                    values.get("x_one_table_minima", ""),
                ]
            )
    print_table(
        f"trail of {ROWS:,} entries, {ROUNDS} interleaved rounds",
        ["figure: trail", "min", "median", "x one table (median of rounds)", "x one (minima)"],
        rows,
    )


def _verdicts(result: dict) -> dict:
    low, high = TARGETS["update_ratio"]
    ratio = result["update_ms"][MONTHLY]["x_one_table"]
    verdicts = {
        "update_ratio": {"value": ratio, "target": [low, high], "met": low <= ratio <= high}
    }
    for figure in ("first_page_p95_ms", "deep_to_first_p95", "admin_p95_ms"):
        for name, values in result[figure].items():
            verdicts[f"{figure}: {name}"] = {
                "value": values["median"],
                "target": TARGETS[figure],
                "met": values["median"] <= TARGETS[figure],
            }
    print_verdicts(verdicts)
    return verdicts


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_trail_scale needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    results = {
        "rows": ROWS,
        "rounds": ROUNDS,
        "updates_per_turn": UPDATES,
        "requests_per_turn": REQUESTS,
        "admin_requests_per_turn": ADMIN_REQUESTS,
        "targets": TARGETS,
    }
    with scratch_databases(["one", "monthly"]) as (one_db, monthly_db):
        results["server"] = server_facts()  # the configured database need not exist
        trails = [Trail(ONE, one_db), Trail(MONTHLY, monthly_db)]
        for trail in trails:
            _use(trail.database)
            capture.OURS.configure()
            if trail.name == ONE:
                make_one_table()
            else:
                today = datetime.datetime.now(datetime.UTC).date()
                trail.facts["partitions_added"] = add_months(
                    today - datetime.timedelta(days=801), today
                )
            print(f"\n{trail.name}: filling {ROWS:,} audit rows by COPY ...", flush=True)
            trail.facts["fill"] = fill(ROWS)
            if trail.name == MONTHLY:
                default = _scalar(f"SELECT count(*) FROM {ENTRIES}_default")
                assert default == 0, f"{default} rows in the default partition"
            trail.facts["disk"] = disk()
            prepare(trail)
        print_table(
            "the load and the disk",
            ["trail", "fill s", "COPY rows/s", "index s", "partitions", "heap B", "index B"],
            [
                [
                    t.name,
                    t.facts["fill"]["seconds"],
                    f"{t.facts['fill']['copy_rows_per_s']:,}",
                    t.facts["fill"]["index_seconds"],
                    t.facts["disk"]["partitions"],
                    t.facts["disk"]["table_bytes_per_entry"],
                    t.facts["disk"]["index_bytes_per_entry"],
                ]
                for t in trails
            ],
        )
        runs = interleaved(trails, turn, rounds=ROUNDS)
        result = compare(runs)
        _print_figures(result)
        for trail in trails:
            trail.configure()
            newest = AuditLog.objects.order_by("-id").values_list("id", flat=True).first()
            trail.facts["plans"] = plans(newest - ROWS // 2)
        print_table(
            "the page queries' plans, once after the rounds",
            ["trail: query", "planning ms", "execution ms", "relations read", "top node"],
            [
                [f"{t.name}: {q}", p["planning_ms"], p["execution_ms"], p["relations_read"],
                 p["top_node"]]
                for t in trails
                for q, p in t.facts["plans"].items()
            ],
        )  # fmt: skip
        results["trails"] = {t.name: {"database": t.database, **t.facts} for t in trails}
        results["figures"] = result
        results["verdicts"] = _verdicts(result)
    write_results("trail_scale", results)
