"""On PostgreSQL, the entry for an audited UPDATE travels in the UPDATE statement itself:

    WITH audit_change AS (UPDATE "<tracked table>" SET ... RETURNING 1)
    SELECT id FROM audit_append(...) WHERE EXISTS (SELECT FROM audit_change)

one statement and one round trip instead of two, which is most of what capture costs
(bench/bench_audit.py (a)). pre_save announces the instance; the execute wrapper attaches
the entry to the first UPDATE of that table's row that follows; post_save sees it was written.
Any other path (SQLite, an UPDATE that does not match) falls back to a separate INSERT.
"""

from contextvars import ContextVar
from dataclasses import dataclass

from django.db import connections

from audit import services, tracking


@dataclass
class _Expected:
    instance: object
    update_fields: object
    prefix: str
    seen_query: bool = False
    written: dict | None = None


_expected: ContextVar[_Expected | None] = ContextVar("audit_expected_update", default=None)


def expect(instance, update_fields, *, using) -> None:
    if connections[using].vendor != "postgresql":
        return
    table = instance._meta.db_table
    prefix = f'UPDATE "{table}" SET '  # noqa: S608 (matched, not executed)
    _expected.set(_Expected(instance, update_fields, prefix=prefix))


def written(instance) -> dict | None:
    """The snapshot saved with the entry, if the entry rode along with this instance's UPDATE."""
    expected = _expected.get()
    if expected is None or expected.instance is not instance:
        return None
    _expected.set(None)
    return expected.written


def attach_entry(execute, sql, params, many, context):
    """Only the first statement after pre_save can be the save's own UPDATE."""
    expected = _expected.get()
    if expected is None or expected.seen_query:
        return execute(sql, params, many, context)
    expected.seen_query = True
    matches = sql.startswith(expected.prefix) and params and params[-1] == expected.instance.pk
    if many or not matches:
        return execute(sql, params, many, context)
    entry, snapshot = tracking.update_entry(expected.instance, expected.update_fields)
    expected.written = snapshot
    if entry is None:
        return execute(sql, params, many, context)
    # The entry is written only if the UPDATE found its row; the statement then counts the
    # one inserted entry, as the UPDATE would have counted its one row.
    sql = (
        f"WITH audit_change AS ({sql} RETURNING 1) "  # noqa: S608 (Django's SQL, our constant)
        f"SELECT id {services.APPEND_FROM} WHERE EXISTS (SELECT FROM audit_change)"
    )
    return execute(sql, [*params, *services.append_params(services.stored([entry]))], many, context)
