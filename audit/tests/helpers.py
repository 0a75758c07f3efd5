"""Reading the trail in tests, and acting as a database superuser who bypasses the app."""

import datetime
import json
from contextlib import contextmanager

from django.db import connection
from django.utils import timezone

from audit import services, subjects, triggers
from audit.models import AuditLog
from audit.tests.factories import AuditLogFactory


def last_entry_id() -> int:
    """A mark: the entries a step writes are those with a greater id."""
    entry = AuditLog.objects.order_by("-id").first()
    return entry.id if entry else 0


def entries_after(mark: int, **filters):
    return AuditLog.objects.filter(id__gt=mark, **filters).order_by("id")


def actions_after(mark: int, **filters) -> list[str]:
    return list(entries_after(mark, **filters).values_list("action", flat=True))


def only_entry(mark: int, action: str, **filters) -> AuditLog:
    entries = list(entries_after(mark, action=action, **filters))
    assert len(entries) == 1, f"expected one {action} entry, got {entries}"
    return entries[0]


def entry_of_old_code() -> AuditLog:
    """An entry written as code older than the sealing columns (audit/subjects.py) wrote it,
    into a trail migrated back to before them: its id."""
    row = services.stored([services.entry_values("invoice.updated", target=("invoice", 1))])[0]
    columns = [c for c in services.COLUMNS if c not in subjects.STORED_ONLY]
    with connection.cursor() as cursor:
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.execute(
            f"INSERT INTO audit_auditlog ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
            " RETURNING id",
            [json.dumps(row[c]) if c == "metadata" else row[c] for c in columns],
        )
        return AuditLog(id=cursor.fetchone()[0])


def run_sql(*statements: str, params=None) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, params)


def installed_triggers() -> set[str]:
    """The names of the triggers on the audit tables, read from the database's catalog."""
    if connection.vendor == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = %s::regclass"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s"
    names = set()
    with connection.cursor() as cursor:
        for table in triggers.TABLES:
            cursor.execute(sql, [table])
            names |= {row[0] for row in cursor.fetchall()}
    return names


def drop_triggers() -> None:
    run_sql(*triggers.uninstall_sql(connection.vendor))


def install_triggers() -> None:
    run_sql(*triggers.uninstall_sql(connection.vendor), *triggers.install_sql(connection.vendor))


@contextmanager
def triggers_lifted():
    """What a database superuser can do: drop the append-only triggers for a while."""
    drop_triggers()
    try:
        yield
    finally:
        install_triggers()


def indexes_in(plan: str) -> set[str]:
    """The indexes a PostgreSQL plan reads, each also by the name of the partitioned index it
    is a partition's part of (audit/partitions.py)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, coalesce(p.relname, i.relname) FROM pg_class i"
            " LEFT JOIN pg_inherits h ON h.inhrelid = i.oid"
            " LEFT JOIN pg_class p ON p.oid = h.inhparent WHERE i.relkind = 'i'"
        )
        names = cursor.fetchall()
    return {name for pair in names if f" {pair[0]} " in f" {plan} " for name in pair}


def db_value(moment: datetime.datetime):
    return connection.ops.adapt_datetimefield_value(moment)


def age_entries(
    *, days: float = 0, minutes: float = 0, through_id: int | None = None, after_id: int = 0
) -> datetime.datetime:
    """Backdate entries (all, or those after `after_id` up to `through_id`) to that long ago:
    `created_at` is set by the database, so time travel needs the triggers lifted. Do it before
    sealing them: a sealed entry moved in time breaks its checkpoint."""
    moment = timezone.now() - datetime.timedelta(days=days, minutes=minutes)
    through_id = through_id if through_id is not None else last_entry_id()
    with triggers_lifted():
        run_sql(
            "UPDATE audit_auditlog SET created_at = %s WHERE id > %s AND id <= %s",
            params=[db_value(moment), after_id, through_id],
        )
    return moment


def run_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
        return cursor.fetchone()[0]


def migrate_to_the_latest(executor) -> None:
    """The database the next tests share is the project's as it stands, every app's newest."""
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def seal_all() -> None:
    """Seal every entry: a checkpoint lies in one month, so entries of several take more."""
    while services.seal_audit_log():
        pass


def months_ago(count: int) -> datetime.date:
    today = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
    index = today.year * 12 + today.month - 1 - count
    return datetime.date(index // 12, index % 12 + 1, 1)


def entries_in(month: datetime.date, count: int, *, day: int = 10) -> list[int]:
    """`count` new entries dated in `month` (the database sets their time: a superuser moves
    it), not sealed yet."""
    mark = last_entry_id()
    AuditLogFactory.create_batch(count)
    moment = datetime.datetime(month.year, month.month, day, 12, tzinfo=datetime.UTC)
    with triggers_lifted():
        run_sql(
            "UPDATE audit_auditlog SET created_at = %s WHERE id > %s",
            params=[db_value(moment), mark],
        )
    return list(AuditLog.objects.filter(id__gt=mark).order_by("id").values_list("id", flat=True))


def fetch(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def partitions_of(table: str = "audit_auditlog") -> dict[str, str]:
    """name -> bounds, as the catalog says."""
    return dict(
        fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits h"
            " JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = %s::regclass",
            [table],
        )
    )
