"""Monthly partitions of the audit entries on PostgreSQL; SQLite keeps one table.

`audit_auditlog` is partitioned by range of `created_at`, one partition a month in UTC
(`audit_auditlog_p2026_12`): a month past retention can leave by dropping its partition rather
than by deleting its rows, and a list by date reads the months it names. A partitioned table's
primary key must hold its partition key, so the database's is (id, created_at); Django still
knows an entry by its id, which the identity column keeps unique.

- Migration 0007 partitions the table in place: the table as it was becomes the partition of
  everything before next month (`audit_auditlog_before`), its rows and indexes where they are,
  or is dropped when it holds no row.
- The owner's `audit_add_partitions(first, last)` adds the months from one day to another that
  have no partition yet; `migrate` and a daily beat task keep AUDIT_PARTITION_MONTHS_AHEAD months
  ready. The application's role may call it and nothing else: it has no privilege on any
  partition, and reads and appends through the partitioned table.
- A row that no month takes (a clock far off, months without the beat) lands in the default
  partition rather than failing its transaction. Adding its month moves it there; the beat task
  reports any that remain.
- Each partition gets the append-only triggers (audit/triggers.py) as it is made.
"""

import datetime
import logging

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from audit import triggers
from audit.models import AuditLog, RetentionGrant

logger = logging.getLogger(__name__)

ENTRIES = AuditLog._meta.db_table
BEFORE = f"{ENTRIES}_before"
DEFAULT = f"{ENTRIES}_default"
FUNCTION = "audit_add_partitions(date, date)"
# Making a partition locks the entries table for a moment: a call that cannot have the lock
# soon gives up (writers queue behind a waiting lock), and the next day's round adds it.
LOCK_WAIT = "2s"
MAX_MONTHS_AHEAD = 24
MAX_MONTHS_A_CALL = 36


def function_sql(schema: str) -> str:
    entries = f"{schema}.{ENTRIES}"
    default = f"{schema}.{DEFAULT}"
    grants = f"{schema}.{RetentionGrant._meta.db_table}"
    return f"""
    CREATE OR REPLACE FUNCTION {schema}.audit_add_partitions(first_day date, last_day date)
    RETURNS TABLE (added integer, outside bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema}, pg_temp
    SET lock_timeout = '{LOCK_WAIT}' SET TimeZone = 'UTC' AS $$
    DECLARE
        month date := date_trunc('month', first_day)::date;
        lower timestamptz;
        upper timestamptz;
        part text;
        make text;
    BEGIN
        -- A caller may not hold the trail's lock for long, nor leave it months to plan.
        IF last_day > now() + interval '{MAX_MONTHS_AHEAD} months'
            OR last_day - first_day > {MAX_MONTHS_A_CALL * 31} THEN
            RAISE EXCEPTION 'audit partitions: % to % is too far', first_day, last_day
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        added := 0;
        WHILE month <= last_day LOOP
            part := '{ENTRIES}_p' || to_char(month, 'YYYY_MM');
            lower := month::timestamp AT TIME ZONE 'UTC';
            upper := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            make := format('CREATE TABLE {schema}.%I PARTITION OF {entries} '
                'FOR VALUES FROM (%L) TO (%L)', part, lower, upper);
            IF to_regclass(format('{schema}.%I', part)) IS NULL THEN
                BEGIN
                    EXECUTE make;
                EXCEPTION
                    -- An older partition holds the month, or another call just made it.
                    WHEN invalid_object_definition OR duplicate_table THEN
                        make := NULL;
                    WHEN check_violation THEN  -- rows of the month wait in the default partition
                        ALTER TABLE {entries} DETACH PARTITION {default};
                        EXECUTE make;
                        INSERT INTO {grants} (transaction_id) VALUES (txid_current());
                        WITH moved AS (
                            DELETE FROM {default} d
                            WHERE d.created_at >= lower AND d.created_at < upper RETURNING d.*
                        ) INSERT INTO {entries} SELECT * FROM moved;
                        DELETE FROM {grants} WHERE transaction_id = txid_current();
                        ALTER TABLE {entries} ATTACH PARTITION {default} DEFAULT;
                END;
                IF make IS NOT NULL THEN
                    PERFORM audit_protect(format('{schema}.%I', part)::regclass);
                    added := added + 1;
                END IF;
            END IF;
            month := month + interval '1 month';
        END LOOP;
        outside := (SELECT count(*) FROM {default});
        RETURN NEXT;
    END $$
    """  # noqa: S608


def is_partitioned(using: str = "default") -> bool:
    if connections[using].vendor != "postgresql":
        return False
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [ENTRIES])
        row = cursor.fetchone()
    return bool(row and row[0])


def month_of(moment: datetime.datetime) -> datetime.date:
    """The first day of a moment's month, in UTC (the partitions' months)."""
    return moment.astimezone(datetime.UTC).date().replace(day=1)


def month_after(day: datetime.date, months: int) -> datetime.date:
    index = day.year * 12 + day.month - 1 + months
    return datetime.date(index // 12, index % 12 + 1, 1)


def add_partitions(*, months_ahead: int | None = None, using: str = "default") -> tuple[int, int]:
    """Make the partitions of this month and the next `months_ahead` that are missing; return
    how many were made and how many entries still lie outside every month."""
    if not is_partitioned(using):
        return 0, 0
    ahead = settings.AUDIT_PARTITION_MONTHS_AHEAD if months_ahead is None else months_ahead
    today = timezone.now().astimezone(datetime.UTC).date()
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT * FROM audit_add_partitions(%s, %s)", [today, month_after(today, ahead)]
        )
        added, outside = cursor.fetchone()
    if outside:
        logger.error(
            "%s audit entries lie outside every monthly partition (in %s): their months are "
            "more than AUDIT_PARTITION_MONTHS_AHEAD away, or their clock was wrong",
            outside,
            DEFAULT,
        )
    return added, outside


# Migration 0007 --------------------------------------------------------------------------------


def _executor(schema_editor):
    """The schema editor's execute(), with no parameters to merge into the SQL (its % signs are
    PL/pgSQL's)."""
    return lambda sql: schema_editor.execute(sql, params=None)


def _fetch(schema_editor, sql: str, params=None) -> list[tuple]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _indexes(schema_editor, table: str) -> list[str]:
    """The indexes of a table but its primary key's."""
    return [
        name
        for (name,) in _fetch(
            schema_editor,
            "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary",
            [table],
        )
    ]


def _next_id(schema_editor, table: str) -> int:
    ((sequence,),) = _fetch(schema_editor, "SELECT pg_get_serial_sequence(%s, 'id')", [table])
    ((next_id,),) = _fetch(
        schema_editor,
        f"SELECT greatest(s.last_value + s.is_called::int, (SELECT coalesce(max(id), 0) + 1"  # noqa: S608
        f" FROM {table})) FROM {sequence} s",
    )
    return next_id


def _rename_out_of_the_way(schema_editor, table: str, new_name: str) -> int:
    """Rename a version of the entries table and its indexes, so that the other version can
    take their names, and free its ids' sequence; return the next id it would have given."""
    next_id = _next_id(schema_editor, table)
    execute = _executor(schema_editor)
    execute(f"ALTER TABLE {table} RENAME TO {new_name}")
    execute(f"ALTER TABLE {new_name} RENAME CONSTRAINT {table}_pkey TO {new_name}_pkey")
    for index in _indexes(schema_editor, new_name):
        execute(f"ALTER INDEX {index} RENAME TO {index}_{new_name.removeprefix(ENTRIES + '_')}")
    execute(f"ALTER TABLE {new_name} ALTER COLUMN id DROP IDENTITY")
    return next_id


def _give_ids_and_indexes(schema_editor, model, next_id: int, key: str) -> None:
    execute = _executor(schema_editor)
    execute(
        f"ALTER TABLE {ENTRIES} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"
        f" (START WITH {next_id})"
    )
    execute(f"ALTER TABLE {ENTRIES} ADD CONSTRAINT {ENTRIES}_pkey PRIMARY KEY ({key})")
    for index in model._meta.indexes:
        schema_editor.add_index(model, index)
    execute(f"SELECT audit_protect('{ENTRIES}'::regclass)")


def partition(apps, schema_editor):
    """The entries table becomes the partitioned one, its rows kept in place."""
    if schema_editor.connection.vendor != "postgresql":
        return
    execute = _executor(schema_editor)
    # A database migrated before audit_protect() existed has only the trigger function.
    execute(triggers.POSTGRES_FUNCTIONS)
    execute(f"LOCK TABLE {ENTRIES} IN ACCESS EXCLUSIVE MODE")
    next_id = _rename_out_of_the_way(schema_editor, ENTRIES, BEFORE)
    execute(
        f"CREATE TABLE {ENTRIES} (LIKE {BEFORE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        " PARTITION BY RANGE (created_at)"
    )
    _give_ids_and_indexes(
        schema_editor, apps.get_model("audit", "AuditLog"), next_id, "id, created_at"
    )
    if _fetch(schema_editor, f"SELECT EXISTS (SELECT FROM {BEFORE})")[0][0]:  # noqa: S608
        # Up to next month (in UTC): the rest of this month's entries land with the older ones.
        ((upper,),) = _fetch(
            schema_editor,
            "SELECT quote_literal((date_trunc('month', greatest(now(), max(created_at))"  # noqa: S608
            f" AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC') FROM {BEFORE}",
        )
        execute(
            f"ALTER TABLE {BEFORE} DROP CONSTRAINT {BEFORE}_pkey,"
            f" ADD CONSTRAINT {BEFORE}_pkey PRIMARY KEY (id, created_at)"
        )
        execute(
            f"ALTER TABLE {ENTRIES} ATTACH PARTITION {BEFORE}"
            f" FOR VALUES FROM (MINVALUE) TO ({upper})"
        )
    else:
        execute(f"DROP TABLE {BEFORE}")
    execute(f"CREATE TABLE {DEFAULT} PARTITION OF {ENTRIES} DEFAULT")
    execute(f"SELECT audit_protect('{DEFAULT}'::regclass)")
    schema = schema_editor.quote_name(_fetch(schema_editor, "SELECT current_schema()")[0][0])
    execute(function_sql(schema))
    today = timezone.now().astimezone(datetime.UTC).date()
    last = month_after(today, settings.AUDIT_PARTITION_MONTHS_AHEAD)
    execute(f"SELECT * FROM audit_add_partitions('{today}', '{last}')")  # noqa: S608


def unpartition(apps, schema_editor):
    """Back to one table, every row copied into it."""
    if schema_editor.connection.vendor != "postgresql":
        return
    partitioned = f"{ENTRIES}_partitioned"
    execute = _executor(schema_editor)
    execute(f"LOCK TABLE {ENTRIES} IN ACCESS EXCLUSIVE MODE")
    next_id = _rename_out_of_the_way(schema_editor, ENTRIES, partitioned)
    execute(f"CREATE TABLE {ENTRIES} (LIKE {partitioned} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    execute(f"INSERT INTO {ENTRIES} SELECT * FROM {partitioned}")  # noqa: S608
    execute(f"DROP TABLE {partitioned}")
    execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")
    _give_ids_and_indexes(schema_editor, apps.get_model("audit", "AuditLog"), next_id, "id")
