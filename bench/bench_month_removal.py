"""Removing a month of the audit trail, archive then drop, while audited writes go on.

Each of BENCH_REMOVAL_ROUNDS rounds (3) runs on a fresh scratch database, partitioned as
migrated. bench_audit's fill() loads, in one INSERT ... SELECT, BENCH_REMOVAL_ROWS entries
(1,000,000) spread evenly over one ended month, 14 months before this one (past the 365 days'
retention), then BENCH_REMOVAL_CURRENT_ROWS (10,000) over this month up to now; ids grow with
time. fill() makes the month partitions with audit_add_partitions(); the default partition is
checked empty after it. Each entry's digest is the HMAC that audit/integrity.py row_digest()
computes (here in SQL, with PostgreSQL's sha256(): bench_audit's FILL_SQL writes md5 stand-ins,
which no verification passes), checked against row_digest() on the oldest and newest entries.
The trail is then sealed (`seal_audit_log()` until None: 100,000 entries a checkpoint, cut at
the month's end). The archive storage is a fresh temporary folder (FileSystemStorage, as
conftest.py has it for tests). Measured in each round, in this order:

1. archive throughput: `archive_month(month)` (the month written, read back, recorded), its
   entries over its seconds. Target: >= 100,000 entries/s.
2. the removal: `cleanup_audit_logs(days=365)` whole (it reads the month's archive back and
   verifies it again, then drops the partition), and the drop alone: the call of
   audit/retention.py `_drop` (the owner's audit_drop_month(), which counts, detaches and drops
   the partition, then the run's `audit.purged` entry and the commit), timed by a wrapper. The
   month must leave by its partition, every entry of it. Target: drop <= 1 s.
3. audited writes meanwhile: a forked process (its own connection and interpreter lock) writes
   entries back to back, `services.log("invoice.updated", ...)` with an API request's context
   bound, each in its own transaction, while the archive runs and while the cleanup runs; of
   the writes that overlap each (and the drop alone): count, p50, p99, max. Target: p99 <= 50 ms.
4. verification throughput: `verify_audit_log()` and `verify_audit_log(jobs=2)` after the
   archive (the month read from the database and from its archive, merged) and after the drop
   (from the archive only): entries checked over seconds, and whether the trail verified. No
   target.

Min and median across rounds of each figure, per round in the results; the targets are judged
on the medians. Beside them, for reference: the fill's seconds, the seal's rate, the archive's
size, and the server's settings (bench_trail_scale's server_facts()). A round of 1M entries
takes minutes (migrate, fill, seal, archive, cleanup, four verifications).

Environment: BENCH_REMOVAL_ROWS (1,000,000), BENCH_REMOVAL_CURRENT_ROWS (10,000),
BENCH_REMOVAL_ROUNDS (3).
"""

import datetime
import hashlib
import multiprocessing
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from audit import archive, integrity, partitions, registry, retention
from audit.context import AuditContext, bind
from audit.models import AuditLog, VerificationRun
from audit.services import log, seal_audit_log
from audit.verification import FIELDS, verify_audit_log
from bench.bench_audit import fill
from bench.bench_trail_scale import _scalar, _summary, server_facts
from bench.common import (
    archive_storage,
    env_int,
    print_table,
    print_verdicts,
    scratch_database,
    summary_ms,
    write_results,
)

ROWS = env_int("BENCH_REMOVAL_ROWS", 1_000_000)
CURRENT_ROWS = env_int("BENCH_REMOVAL_CURRENT_ROWS", 10_000)
ROUNDS = env_int("BENCH_REMOVAL_ROUNDS", 3)
MONTHS_AGO = 14
DAYS = 365
SAMPLE = 1000  # the oldest and the newest entries whose digests are checked after the fill
ACTIONS = ["invoice.created", "invoice.updated", "invoice.finalized", "payment.processed"]
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36"
)
METADATA = '{"changes":{"status":["draft","finalized"]}}'  # compact JSON, as row_digest() signs
WRITER_CONTEXT = AuditContext(
    ip_address="203.0.113.7",
    user_agent=USER_AGENT,
    method="PATCH",
    path="/api/invoices/1/",
    request_id="bench-writer",
    origin="api",
)
TARGETS = {"archive_rows_per_s": 100_000, "drop_seconds": 1.0, "write_p99_ms": 50}


# The trail -------------------------------------------------------------------------------

# Entry g: one of ACTIONS by one of 1,000 users on one of 50,000 invoices, from an API client;
# the first {month_rows} in the old month, the others in this one up to now, evenly. `e` holds
# the columns, in the order listed, but the digest, which is computed from them.
FILL_SQL = """
INSERT INTO audit_auditlog (action, category, description, user_id, user_email, resource_type,
    resource_id, ip_address, user_agent, method, path, request_id, metadata, success, origin,
    created_at, digest)
SELECT e.*, {digest}
FROM (
    SELECT names[1 + g %% 4] AS action, categories[1 + g %% 4] AS category,
        'user' || (g %% 1000) || '@example.com changed invoice ' || (g %% 50000) AS description,
        1 + g %% 1000 AS user_id, 'user' || (g %% 1000) || '@example.com' AS user_email,
        'invoice' AS resource_type, (g %% 50000)::text AS resource_id,
        ('10.0.' || (g %% 250) || '.' || (g %% 200))::inet AS ip_address,
        '{user_agent}' AS user_agent, 'PATCH' AS method,
        '/api/invoices/' || (g %% 50000) || '/' AS path, md5(g::text) AS request_id,
        '{metadata}'::json AS metadata, g %% 10 <> 0 AS success, 'api' AS origin,
        CASE WHEN g <= {month_rows}
            THEN '{lower}'::timestamptz + (g - 1) * ({month_span} / {month_rows})
            ELSE '{this_month}'::timestamptz
                + (g - {month_rows} - 1) * ((now() - '{this_month}'::timestamptz) / {current_rows})
            END AS created_at
    FROM generate_series(1, %(rows)s) AS g,
        (SELECT ARRAY[{names}] AS names, ARRAY[{categories}] AS categories) AS registered
) AS e
"""


def _canonical_sql() -> str:
    """What row_digest() signs of an entry of the fill (an origin, no label, nothing sealed,
    as in entries written before sealing): its fields as
    compact JSON (the values are ASCII and never NULL: to_json() quotes them as Python does)."""
    fields = integrity.DIGEST_FIELDS[: integrity.DIGEST_FIELDS.index("origin") + 1]
    as_is = {"user_id": "e.user_id", "success": "e.success", "metadata": "e.metadata"}
    parts = [f"{as_is.get(name, f'to_json(e.{name})')}::text" for name in fields]
    return "'[' || " + " || ',' || ".join(parts) + " || ']'"


def _hmac_sql(message: str) -> str:
    """HMAC-SHA256 (RFC 2104) of the text `message` under AUDIT_HMAC_KEY, as integrity.py
    computes it, from PostgreSQL's sha256() (no extension needed)."""
    key = settings.AUDIT_HMAC_KEY.encode()
    key = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner, outer = (bytes(byte ^ pad for byte in key).hex() for pad in (0x36, 0x5C))
    signed = f"sha256('\\x{inner}'::bytea || convert_to({message}, 'UTF8'))"
    return f"encode(sha256('\\x{outer}'::bytea || {signed}), 'hex')"


def fill_sql(month: datetime.date, this_month: datetime.date) -> str:
    lower, upper = archive.month_bounds(month)
    return FILL_SQL.format(
        digest=_hmac_sql(_canonical_sql()),
        names=", ".join(f"'{name}'" for name in ACTIONS),
        categories=", ".join(f"'{registry.action(name).category}'" for name in ACTIONS),
        user_agent=USER_AGENT,
        metadata=METADATA,
        month_rows=ROWS,
        current_rows=max(CURRENT_ROWS, 1),
        lower=lower.isoformat(),
        month_span=f"interval '{(upper - lower).total_seconds():.0f} seconds'",
        this_month=archive.month_bounds(this_month)[0].isoformat(),
    )


def fill_trail(month: datetime.date, this_month: datetime.date) -> float:
    """The trail loaded (see the docstring); its seconds."""
    seconds = fill(ROWS + CURRENT_ROWS, sql=fill_sql(month, this_month))
    default = _scalar(f"SELECT count(*) FROM {partitions.DEFAULT}")
    assert default == 0, f"{default} entries in the default partition"
    lower, upper = archive.month_bounds(month)
    in_month = AuditLog.objects.filter(created_at__gte=lower, created_at__lt=upper).count()
    assert in_month == ROWS, f"{in_month} entries in {month:%Y-%m}, not {ROWS}"
    for order in ("id", "-id"):
        for row in AuditLog.objects.order_by(order).values(*FIELDS)[:SAMPLE]:
            assert integrity.row_digest(row) == row["digest"], f"id {row['id']}: digest wrong"
    return seconds


def seal() -> float:
    started = time.perf_counter()
    while seal_audit_log():
        pass
    return time.perf_counter() - started


# The writer ------------------------------------------------------------------------------


def _write(stop, ready, sender) -> None:
    """In the forked writer: audited entries back to back until `stop`, each in its own
    transaction; sends their (start, end) perf_counter() times (CLOCK_MONOTONIC, the same in
    every process)."""
    times = []
    try:
        with bind(WRITER_CONTEXT):
            while not stop.is_set():
                started = time.perf_counter()
                with transaction.atomic():
                    log(
                        "invoice.updated",
                        target=("invoice", len(times) % 50_000),
                        metadata={"changes": {"client_name": ["Old", f"New {len(times)}"]}},
                    )
                times.append((started, time.perf_counter()))
                ready.set()
        sender.send(times)
    finally:
        connections.close_all()


@contextmanager
def writer():
    """A forked process writing audited entries while the block runs (from its first write
    on); the list it yields gets their (start, end) times when the block ends."""
    connections.close_all()  # the child opens its own connection
    context = multiprocessing.get_context("fork")
    stop, ready = context.Event(), context.Event()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_write, args=(stop, ready, sender))
    process.start()
    sender.close()
    writes = []
    try:
        while not ready.wait(0.1):
            if not process.is_alive():
                break
        yield writes
    finally:
        stop.set()
        with suppress(EOFError):  # it failed: said below
            writes += receiver.recv()
        process.join()
    if process.exitcode != 0:
        raise RuntimeError("the audited writer failed: its traceback is above")


def _overlapping(writes: list, window: tuple[float, float]) -> list[float]:
    """The seconds of the writes that overlap the window."""
    start, end = window
    return [done - began for began, done in writes if began < end and done > start]


def _writes(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0, "max_ms": 0.0}
    return {**summary_ms(seconds), "max_ms": round(max(seconds) * 1000, 3)}


# The phases ------------------------------------------------------------------------------


def archive_phase(month: datetime.date, folder: Path) -> dict:
    with writer() as writes:
        started = time.perf_counter()
        done = archive.archive_month(month)
        window = (started, time.perf_counter())
    assert done is not None and done.row_count == ROWS, done
    seconds = window[1] - window[0]
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return {
        "seconds": round(seconds, 3),
        "rows_per_s": round(ROWS / seconds),
        "archive_mb": round(size / 2**20, 1),
        "writes": _writes(_overlapping(writes, window)),
    }


@contextmanager
def timed_drops():
    """audit/retention.py `_drop` wrapped: the (start, end) of each call go to the list."""
    drop, windows = retention._drop, []

    def timed(month: datetime.date):
        started = time.perf_counter()
        try:
            return drop(month)
        finally:
            windows.append((started, time.perf_counter()))

    with mock.patch.object(retention, "_drop", timed):
        yield windows


def cleanup_phase(month: datetime.date) -> dict:
    with timed_drops() as drops, writer() as writes:
        started = time.perf_counter()
        result = retention.cleanup_audit_logs(days=DAYS)
        window = (started, time.perf_counter())
    assert result.dropped == (f"{month:%Y-%m}",), f"the month was not dropped: {result}"
    assert result.deleted == ROWS, f"{result.deleted} entries removed, not {ROWS}"
    part = f"{partitions.ENTRIES}_p{month:%Y_%m}"
    assert _scalar("SELECT to_regclass(%s)", [part]) is None, f"{part} is still there"
    (drop,) = drops
    return {
        "seconds": round(window[1] - window[0], 3),
        "drop_seconds": round(drop[1] - drop[0], 3),
        "writes": _writes(_overlapping(writes, window)),
        "writes_during_drop": _writes(_overlapping(writes, drop)),
    }


def verification() -> dict:
    figures = {}
    for jobs in (1, 2):
        started = time.perf_counter()
        result = verify_audit_log(jobs=jobs)
        seconds = time.perf_counter() - started
        figures[f"jobs={jobs}"] = {
            "ok": result.ok,
            "checked": result.checked,
            "seconds": round(seconds, 3),
            "rows_per_s": round(result.checked / seconds),
        }
        if not result.ok:
            run = VerificationRun.objects.order_by("-id").first()
            problems = [p for month in run.months.all() for p in month.problems]
            figures[f"jobs={jobs}"] |= {"first_bad_id": result.first_bad_id, "problems": problems}
            print(f"  verification (jobs={jobs}) FAILED at {result.first_bad_id}: {problems[:5]}")
    return figures


def one_round(month: datetime.date, this_month: datetime.date, folder: Path) -> dict:
    print(f"  filling {ROWS:,} + {CURRENT_ROWS:,} entries ...", flush=True)
    figures = {"fill_seconds": round(fill_trail(month, this_month), 1)}
    seconds = seal()
    figures["seal_rows_per_s"] = round((ROWS + CURRENT_ROWS) / seconds)
    print(f"  sealed in {seconds:.1f} s; archiving {month:%Y-%m} ...", flush=True)
    figures["archive"] = archive_phase(month, folder)
    print(f"  archived in {figures['archive']['seconds']} s; verifying ...", flush=True)
    figures["verify_before_drop"] = verification()
    print("  cleanup ...", flush=True)
    figures["cleanup"] = cleanup_phase(month)
    print(f"  cleaned up in {figures['cleanup']['seconds']} s; verifying ...", flush=True)
    figures["verify_after_drop"] = verification()
    return figures


# The run ---------------------------------------------------------------------------------


def _series(run: dict) -> dict[str, float]:
    """The figures of a round compared across rounds."""
    archived, cleanup = run["archive"], run["cleanup"]
    series = {
        "archive_rows_per_s": archived["rows_per_s"],
        "archive_seconds": archived["seconds"],
        "cleanup_seconds": cleanup["seconds"],
        "drop_seconds": cleanup["drop_seconds"],
    }
    for phase, writes in (
        ("archive", archived["writes"]),
        ("cleanup", cleanup["writes"]),
        ("drop", cleanup["writes_during_drop"]),
    ):
        series[f"writes_during_{phase}"] = writes["n"]
        if writes["n"]:
            series[f"write_p50_ms_{phase}"] = writes["p50_ms"]
            series[f"write_p99_ms_{phase}"] = writes["p99_ms"]
        series[f"write_max_ms_{phase}"] = writes["max_ms"]
    for when in ("before_drop", "after_drop"):
        for jobs, figures in run[f"verify_{when}"].items():
            series[f"verify_rows_per_s_{when}_{jobs}"] = figures["rows_per_s"]
    series |= {
        "fill_seconds": run["fill_seconds"],
        "seal_rows_per_s": run["seal_rows_per_s"],
        "archive_mb": archived["archive_mb"],
    }
    return series


def _verdicts(figures: dict) -> dict:
    def median(name: str):
        return figures[name]["median"] if name in figures else None

    checks = {
        "archive_rows_per_s": (median("archive_rows_per_s"), ">=", TARGETS["archive_rows_per_s"]),
        "drop_seconds": (median("drop_seconds"), "<=", TARGETS["drop_seconds"]),
        "write_p99_ms_archive": (median("write_p99_ms_archive"), "<=", TARGETS["write_p99_ms"]),
        "write_p99_ms_cleanup": (median("write_p99_ms_cleanup"), "<=", TARGETS["write_p99_ms"]),
    }
    verdicts = {
        name: {
            "value": value,
            "target": f"{sign} {target}",
            "met": value is not None and (value >= target if sign == ">=" else value <= target),
        }
        for name, (value, sign, target) in checks.items()
    }
    print_verdicts(verdicts)
    return verdicts


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_month_removal needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    this_month = partitions.month_of(timezone.now())
    month = partitions.month_after(this_month, -MONTHS_AGO)
    results = {
        "rows_in_month": ROWS,
        "rows_this_month": CURRENT_ROWS,
        "month": f"{month:%Y-%m}",
        "rounds": ROUNDS,
        "retention_days": DAYS,
        "archive_folder_in": tempfile.gettempdir(),
        "targets": TARGETS,
    }
    runs = []
    for index in range(ROUNDS):
        print(f"\nround {index + 1} of {ROUNDS}", flush=True)
        with scratch_database(), archive_storage() as folder:
            if index == 0:
                results["server"] = server_facts()
            runs.append(one_round(month, this_month, folder))
    series = [_series(run) for run in runs]
    names = [name for name in series[0] if all(name in s for s in series)]
    figures = {name: _summary([s[name] for s in series], None) for name in names}
    print_table(
        f"removing {month:%Y-%m}: {ROWS:,} entries (and {CURRENT_ROWS:,} this month), "
        f"{ROUNDS} rounds",
        ["figure", "min", "median"],
        [[name, v["min"], v["median"]] for name, v in figures.items()],
    )
    failed = [
        f"round {index + 1}, {when} {jobs}"
        for index, run in enumerate(runs)
        for when in ("verify_before_drop", "verify_after_drop")
        for jobs, outcome in run[when].items()
        if not outcome["ok"]
    ]
    print(f"\nverifications that failed: {failed or 'none'}")
    results |= {"per_round": runs, "figures": figures, "verdicts": _verdicts(figures)}
    write_results("month_removal", results)
