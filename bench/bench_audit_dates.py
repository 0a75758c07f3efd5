"""The audit list by date through the API, `GET /api/audit/logs/?since=...`, `?until=...` and
both, newest first (cursor pages by -id), on trails of BENCH_DATES_ROWS rows (1M and 5M by
default, each in a scratch database filled by bench_audit's FILL_SQL: ids grow with time over
800 days). First pages, p50/p95 per case; beside each, the filter's own query (what the API
runs for the page, without HTTP, pagination and JSON), so that the query's share of the API's
time shows, and, for reference, the plain query that the filter made before it bounded ids by
dates (the `created_at` condition alone, ORDER BY id DESC LIMIT 51). The dates are placed by
the share of the trail they cut off, so that the cases mean the same at every size: an "old
date" is one with a small share of the trail before it.

The filled trail is sealed as the beat would have sealed it, a checkpoint per
BENCH_DATES_SEAL_SECONDS (30) of its entries' times, written in one statement: their ranges,
counts and times are those of the entries (the list reads nothing else), their hashes and
digests stand-ins (hashing 5M rows in Python would take longer than the rest of the run; this
trail does not verify). A few entries written after the fill stay unsealed, as in a live trail.

Environment: BENCH_DATES_ROWS ("1000000,5000000"), BENCH_DATES_REQUESTS (60 per case and
round, fewer if BENCH_DATES_SECONDS (8) run out first, at least 3), BENCH_DATES_ROUNDS (3),
BENCH_DATES_SEAL_SECONDS (30). The plain query is timed in the first round only (at least 2
runs, 3 s).
"""

import datetime
import os
import time

from django.db import connection
from django.utils import timezone

from bench.bench_audit import fill
from bench.capture import AuditLog, AuditLogFilter, User, api_client, create_auth_token
from bench.common import env_int, print_table, scratch_database, summary_ms, write_results

ROW_COUNTS = [int(n) for n in os.environ.get("BENCH_DATES_ROWS", "1000000,5000000").split(",")]
REQUESTS = env_int("BENCH_DATES_REQUESTS", 60)
SECONDS = env_int("BENCH_DATES_SECONDS", 8)
ROUNDS = env_int("BENCH_DATES_ROUNDS", 3)
SEAL_SECONDS = env_int("BENCH_DATES_SEAL_SECONDS", 30)
PAGE = 50

SEAL_SQL = """
INSERT INTO audit_checkpoint (first_id, last_id, row_count, rows_hash, previous_digest, digest,
    created_at, oldest_at, newest_at, max_lag)
SELECT first_id, last_id, row_count, md5(last_id::text) || md5(first_id::text),
    md5(first_id::text) || md5(last_id::text), md5(row_count::text) || md5(last_id::text),
    newest_at, oldest_at, newest_at, max(newest_at - oldest_at) OVER (ORDER BY last_id)
FROM (
    SELECT first_id, last_id, row_count, oldest_at, max(newest) OVER (ORDER BY last_id) newest_at
    FROM (
        SELECT min(id) first_id, max(id) last_id, count(*) row_count,
            min(created_at) oldest_at, max(created_at) newest
        FROM audit_auditlog GROUP BY floor(extract(epoch FROM created_at) / %(seconds)s)
    ) ranges
) sealed
"""


def seal_filled() -> tuple[int, float]:
    """Checkpoints over the filled trail (see above): how many, and in how many seconds."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(SEAL_SQL, {"seconds": SEAL_SECONDS})
        count = cursor.rowcount
        cursor.execute("VACUUM ANALYZE audit_checkpoint")
    return count, time.perf_counter() - started


def _moment(share: float) -> datetime.datetime:
    """The time before which `share` of the filled trail lies (ids are in time order)."""
    ids = AuditLog.objects.order_by("id").values_list("id", flat=True)
    first, last = ids.first(), ids.last()
    target = first + round(share * (last - first))
    return ids.filter(id__gte=target).values_list("created_at", flat=True)[0]


def cases() -> dict[str, dict]:
    now = timezone.now()
    share = _moment
    return {
        "no dates (the API's own cost)": {},
        "since: the last hour": {"since": now - datetime.timedelta(hours=1)},
        "since: the last day": {"since": now - datetime.timedelta(days=1)},
        "since: the newer half": {"since": share(0.5)},
        "until: oldest 0.2% (an old date)": {"until": share(0.002)},
        "until: oldest 1%": {"until": share(0.01)},
        "until: oldest 10%": {"until": share(0.1)},
        "until: a day ago (all but the newest)": {"until": now - datetime.timedelta(days=1)},
        "both: a 0.1% window in the old half": {"since": share(0.2), "until": share(0.201)},
        "both: a 1% window in the old half": {"since": share(0.2), "until": share(0.21)},
        "both: a day, a month ago": {
            "since": now - datetime.timedelta(days=31),
            "until": now - datetime.timedelta(days=30),
        },
    }


def _query(values: dict) -> str:
    return "&".join(f"{k}={v.isoformat().replace('+00:00', 'Z')}" for k, v in values.items())


def _filtered(values: dict) -> list[int]:
    """The page's query as the API's filter makes it, without HTTP, pagination and JSON."""
    data = {k: v.isoformat().replace("+00:00", "Z") for k, v in values.items()}
    rows = AuditLogFilter(data=data, queryset=AuditLog.objects.all()).qs
    return list(rows.order_by("-id").values_list("id", flat=True)[: PAGE + 1])


def _timed(call, seconds: float = SECONDS, at_least: int = 3) -> list[float]:
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < REQUESTS and (time.perf_counter() < deadline or len(times) < at_least):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def _plain(values: dict) -> list[int]:
    rows = AuditLog.objects.all()
    if "since" in values:
        rows = rows.filter(created_at__gte=values["since"])
    if "until" in values:
        rows = rows.filter(created_at__lt=values["until"])
    return list(rows.order_by("-id").values_list("id", flat=True)[: PAGE + 1])


def bench_dates(rows: int) -> dict:
    print(f"\nfilling {rows:,} audit rows ...", flush=True)
    fill_seconds = fill(rows)
    checkpoints, seal_seconds = seal_filled()
    print(f"sealed in {checkpoints:,} checkpoints in {seal_seconds:.0f} s", flush=True)
    staff = User.objects.create_user("staff@example.com", "x-bench-pw-1", is_staff=True)
    token = create_auth_token(staff)
    client = api_client(audit=True)
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    api_times = {name: [] for name in cases()}
    filter_times = {name: [] for name in cases()}
    plain_times = {name: [] for name in cases()}
    matched = {}
    for round_ in range(ROUNDS):
        for name, values in cases().items():
            url = f"/api/audit/logs/?{_query(values)}"

            def get(url=url):
                response = client.get(url, **headers)
                assert response.status_code == 200, (url, response.status_code, response.content)
                return response

            ids = [entry["id"] for entry in get().json()["results"]]
            expected = _plain(values)[:PAGE]
            assert ids == expected, (name, ids[:3], expected[:3])  # the same rows, same order
            assert _filtered(values)[:PAGE] == expected
            matched[name] = len(ids)
            api_times[name] += _timed(get)
            filter_times[name] += _timed(lambda values=values: _filtered(values))
            if round_ == 0:  # a reference only: at least 2 runs, 3 s
                plain_times[name] += _timed(lambda values=values: _plain(values), 3, 2)
    result = {
        "rows": rows,
        "fill_seconds": round(fill_seconds, 1),
        "checkpoints": checkpoints,
        "seal_seconds": round(seal_seconds, 1),
        "cases": {},
    }
    for name, values in cases().items():
        result["cases"][name] = {
            "query": _query(values),
            "page_rows": matched[name],
            "api": summary_ms(api_times[name]),
            "filter_query": summary_ms(filter_times[name]),
            "plain_query_for_reference": summary_ms(plain_times[name]),
        }
    print_table(
        f"GET /api/audit/logs/ by date, first page of {PAGE}, {rows:,} rows "
        f"(filled in {fill_seconds:.0f} s)",
        ["case", "API p50", "API p95", "query p50", "query p95", "plain p50", "plain p95", "n"],
        [
            [
                name,
                v["api"]["p50_ms"],
                v["api"]["p95_ms"],
                v["filter_query"]["p50_ms"],
                v["filter_query"]["p95_ms"],
                v["plain_query_for_reference"]["p50_ms"],
                v["plain_query_for_reference"]["p95_ms"],
                v["api"]["n"],
            ]
            for name, v in result["cases"].items()
        ],
    )
    return result


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_audit_dates needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    results = {"rounds": ROUNDS, "requests_per_case_and_round": REQUESTS, "trails": []}
    for rows in ROW_COUNTS:
        with scratch_database():
            results["trails"].append(bench_dates(rows))
    write_results("audit_dates", results)
