"""The admin's audit search: a changelist page (`/admin/audit/auditlog/?q=...`, 50 entries,
newest first) as a logged-in superuser through Django's test client, on a trail of
BENCH_SEARCH_ROWS (1M) entries in a scratch database, for terms of each shape the search tells
apart (audit/admin.py): a common and a rare prefix of emails and labels, one that matches
nothing, and prefixes of IP addresses.

The trail has a realistic spread, over 800 days: 20,000 users whose emails start with one of 40
first names (`grace17@acme.test`), a tenth of the entries without an actor; three entries in
five about invoices labelled with their number, whose year is the entry's
(`INV-2025-042`), one in five about a user labelled with its email, the rest about unlabelled
resources; addresses from 10.0.0.0/8, public IPv4 and IPv6 ranges, one entry in eight without.
Actors, addresses and who is anonymous are drawn by independent hashes of the row number.

Each case: BENCH_SEARCH_WARMUP (2) pages thrown away, then BENCH_SEARCH_RUNS (15) pages, the
cases interleaved round by round; min and median ms of the whole page (the view, its queries,
the template). Beside them, how many entries the search matches (one COUNT per case, outside
the timing), the page's queries, and whether any of them counts rows (the paginator counts
exactly only results the planner estimates under 10,000, core/admin.py).
"""

import statistics
import time

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditLog
from bench.bench_audit import fill
from bench.common import env_int, print_table, scratch_database, write_results
from invoicegen.accounts.models import User

FILL_SQL = """
INSERT INTO audit_auditlog (action, category, description, user_id, user_email, resource_type,
    resource_id, resource_label, ip_address, user_agent, method, path, request_id, metadata,
    success, origin, created_at, digest)
SELECT (ARRAY['invoice.updated', 'invoice.sent', 'invoice.finalized', 'user.login',
        'payment.processed'])[1 + g %% 5],
    kind, 'bench entry', CASE WHEN anonymous THEN NULL ELSE u END,
    CASE WHEN anonymous THEN '' ELSE email END,
    kind, (1 + g %% 200000)::text,
    CASE kind
        WHEN 'invoice'
            THEN 'INV-' || extract(year FROM at) || '-' || lpad((1 + u %% 997)::text, 3, '0')
        WHEN 'user' THEN email ELSE '' END,
    CASE abs(hashint4(g + 2)) %% 8
        WHEN 0 THEN NULL
        WHEN 1 THEN ('2001:db8:' || to_hex(u) || '::' || to_hex(1 + g %% 65535))::inet
        WHEN 2 THEN ('203.0.' || (u %% 256) || '.' || (1 + g %% 254))::inet
        WHEN 3 THEN ((11 + u %% 180) || '.' || (u %% 256) || '.' || (g %% 256) || '.7')::inet
        ELSE ('10.' || (u %% 256) || '.' || (u / 256 %% 256) || '.' || (1 + g %% 254))::inet
        END,
    'bench', 'POST', '/api/', md5(g::text), '{}'::jsonb, g %% 20 <> 0, 'api', at,
    md5(g::text) || md5((g + 1)::text)
FROM (
    SELECT g, u, kind, abs(hashint4(g + 1)) %% 10 = 0 AS anonymous,
        now() - interval '800 days' + g * (interval '800 days' / %(rows)s) AS at,
        (ARRAY['grace', 'ada', 'alan', 'barbara', 'claude', 'dennis', 'donald', 'edsger',
            'frances', 'guido', 'hedy', 'ivan', 'john', 'ken', 'linus', 'margaret', 'niklaus',
            'radia', 'richard', 'shafi', 'tim', 'tony', 'vint', 'whitfield', 'yukihiro',
            'anita', 'bjarne', 'carol', 'david', 'edith', 'fran', 'gordon', 'hal', 'irene',
            'jean', 'karen', 'leslie', 'mary', 'noam', 'olga'])[1 + u %% 40]
            || (u / 40) || '@'
            || (ARRAY['acme.test', 'example.com', 'initech.test', 'globex.test', 'mail.test',
                'umbrella.test'])[1 + u / 40 %% 6] AS email
    FROM generate_series(1, %(rows)s) AS g,
        LATERAL (SELECT 1 + abs(hashint4(g)) %% 20000 AS u) actor,
        LATERAL (SELECT (ARRAY['invoice', 'invoice', 'invoice', 'user', 'payment'])[1 + g %% 5]
            AS kind) target
) entries
"""

ROWS, RUNS = env_int("BENCH_SEARCH_ROWS", 1_000_000), env_int("BENCH_SEARCH_RUNS", 15)
WARMUP = env_int("BENCH_SEARCH_WARMUP", 2)
TARGET_MS = 250
CASES = {
    "common prefix: inv-2026 (this year's invoices)": "inv-2026",
    "common prefix: grace (an email's first name)": "grace",
    "rare prefix: grace173@ (one user)": "grace173@",
    "rare prefix: INV-2025-042 (one number)": "INV-2025-042",
    "no match: zz-nobody": "zz-nobody",
    "IP prefix: 10.0. (one /16)": "10.0.",
    "IP prefix: 10. (half the trail)": "10.",
    "IP prefix: 2001:db8:4d2: (one user's IPv6)": "2001:db8:4d2:",
}


def _page(client: Client, term: str):
    response = client.get(reverse("admin:audit_auditlog_changelist"), {"q": term})
    assert response.status_code == 200, (term, response.status_code)
    return response


def _matched(term: str) -> int:
    from django.contrib.admin import site

    found, _ = site._registry[AuditLog].get_search_results(None, AuditLog.objects.all(), term)
    return found.count()


def _plan(client: Client, term: str) -> dict:
    """The page's queries: how many, which count rows, and the indexes the entries' query uses."""
    with CaptureQueriesContext(connection) as queries:
        response = _page(client, term)
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    entries_sql = next(
        q["sql"] for q in queries if q["sql"].startswith('SELECT "audit_auditlog"."id"')
    )
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {entries_sql}")
        plan = [row[0] for row in cursor.fetchall()]
    indexes = sorted({word for line in plan for word in line.split() if word.startswith("audit_")})
    return {
        "listed": response.content.decode().count('name="_selected_action"'),
        "queries": len(queries),
        "counting_queries": len(counts),
        "entries_query_uses": [name for name in indexes if name != "audit_auditlog"],
    }


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_audit_search needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    with scratch_database():
        print(f"\nfilling {ROWS:,} audit rows ...", flush=True)
        fill_seconds = fill(ROWS, sql=FILL_SQL)
        admin = User.objects.create_superuser("bench-admin@example.com", "x-bench-pw-1")
        client = Client()
        client.force_login(admin)
        times = {name: [] for name in CASES}
        names = list(CASES)
        for index in range(WARMUP + RUNS):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                _page(client, CASES[name])
                if index >= WARMUP:
                    times[name].append(time.perf_counter() - started)
        cases = {}
        for name, term in CASES.items():
            ms = [t * 1000 for t in times[name]]
            cases[name] = {
                "term": term,
                "matched": _matched(term),
                "min_ms": round(min(ms), 1),
                "median_ms": round(statistics.median(ms), 1),
                "per_run_ms": [round(value, 1) for value in ms],
                **_plan(client, term),
            }
    print_table(
        f"admin audit search, one changelist page, {ROWS:,} rows (filled in {fill_seconds:.0f} s)",
        ["case", "matched", "min ms", "median ms", "queries", "counting", "indexes"],
        [
            [
                name,
                v["matched"],
                v["min_ms"],
                v["median_ms"],
                v["queries"],
                v["counting_queries"],
                ",".join(v["entries_query_uses"]),
            ]
            for name, v in cases.items()
        ],
    )
    worst = max(v["median_ms"] for v in cases.values())
    write_results(
        "audit_search",
        {
            "rows": ROWS,
            "fill_seconds": round(fill_seconds, 1),
            "runs": RUNS,
            "warmup_runs": WARMUP,
            "target_ms": TARGET_MS,
            "worst_median_ms": worst,
            "within_target": worst <= TARGET_MS,
            "cases": cases,
        },
    )
