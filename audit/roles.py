"""Two database roles on PostgreSQL, so that the application cannot rewrite its own history.

The owner role (DATABASE_OWNER_URL) runs `migrate` and owns every table and function. The
application's role (DATABASE_URL) reads and writes the domain's tables but may only read the
audit tables and append entries and admin actions (an entry's id and time come from the
database): it cannot update, delete or truncate them, write a retention grant or a checkpoint,
or alter, disable or drop their triggers (only an owner can). What it needs beyond that goes
through SECURITY DEFINER functions of the owner, which check their own conditions:

- `audit_purge(month, ids)` deletes entries of a month for the retention cleanup, and refuses
  if any of them is younger than AUDIT_MIN_RETENTION_DAYS, not in the month's recorded archive
  (which holds only sealed entries), or kept by a legal hold; `audit_drop_month(month)` detaches
  and drops a month's partition on the same conditions for every entry of the month;
- `audit_record_archive(...)` records a month written to the archive (audit/archive.py) only
  for a month that has ended and whose entries up to the archive's last id are as many, and
  from the first id, as it says: a made-up record cannot let unarchived entries go;
- `audit_release_hold(hold, by_email, why)` ends a legal hold, only in a transaction that
  wrote its `audit.hold_released` entry first;
- `audit_erase_subject(subject, by_email, why)` destroys a person's keys (audit/subjects.py),
  only in a transaction that wrote its `audit.subject_erased` entry first, and refuses while a
  legal hold keeps any entry by or about them;
- `audit_seal_boundary()` waits (SHARE lock) until no transaction that wrote an entry is still
  open, and returns the highest id then committed: every id below it is final, so the seal
  never has to guess how long a transaction may stay open;
- `audit_add_checkpoint(...)` adds a checkpoint only as the next link of the chain, over as
  many entries as its range holds and none that do not exist yet.

One more, `audit_append(shared, rows)`, appends entries with the caller's own rights
(audit/services.py `append_params`).

After every `migrate` (audit/management/commands/migrate.py) the functions are made again with
the current settings (AUDIT_MIN_RETENTION_DAYS among them) and the application role's
privileges are granted again, new tables included. With one role for both (a laptop, CI) the
functions exist and nothing is revoked.
"""

from contextlib import contextmanager

from django.conf import settings
from django.db import connections, transaction

from audit import integrity, partitions, triggers
from audit.models import (
    AdminAction,
    Archive,
    AuditLog,
    Checkpoint,
    LegalHold,
    RetentionGrant,
    SubjectKey,
)

# SQLSTATEs of the functions' refusals (class "AU", the project's own).
TOO_YOUNG = "AU002"  # AU001 was "not sealed", for the purge of a prefix of ids
NOT_NEXT = "AU003"
NOT_ARCHIVED = "AU004"
HELD = "AU005"
ENTRY_COLUMNS = (*integrity.DIGEST_FIELDS, "digest")  # what the application writes
CHECKPOINT_FIELDS = ("first_id", "last_id", "row_count", "rows_hash", "previous_digest")
FUNCTIONS = (
    "audit_append(json, json)",
    "audit_purge(date, bigint[])",
    "audit_drop_month(date)",
    "audit_seal_boundary()",
    "audit_add_checkpoint(bigint, bigint, integer, text, text, text)",
    partitions.FUNCTION,
    "audit_record_archive(date, bigint, bigint, bigint, text, text)",
    "audit_release_hold(bigint, text, text)",
    "audit_erase_subject(bigint, text, text)",
)

_CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")


ERASURE_TYPE = "subject"  # what an erasure's entry is about: a person, a user or one gone
# The lock that makes a person's key and erases it one at a time (audit/subjects.py).
SUBJECT_LOCK_SQL = "hashtextextended('audit subject ' || %s::text, 0)"


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def held_sql(holds: str) -> str:
    """Whether a hold in force keeps the entry `e`: LegalHold.entries() in the owner's
    functions (a test holds the two to the same entries)."""
    return f"""EXISTS (SELECT FROM {holds} h WHERE h.released_at IS NULL
                    AND (h.user_id IS NULL OR e.user_id = h.user_id)
                    AND (h.resource_type = '' OR e.resource_type = h.resource_type)
                    AND (h.resource_id = '' OR e.resource_id = h.resource_id)
                    AND (h.category = '' OR e.category = h.category)
                    AND (h.starts_at IS NULL OR e.created_at >= h.starts_at)
                    AND (h.ends_at IS NULL OR e.created_at < h.ends_at))"""


def functions_sql(schema: str, min_retention_days: int, user_resource_type: str) -> list[str]:
    entries = f"{schema}.{AuditLog._meta.db_table}"
    checkpoints = f"{schema}.{Checkpoint._meta.db_table}"
    grants = f"{schema}.{RetentionGrant._meta.db_table}"
    archives = f"{schema}.{Archive._meta.db_table}"
    holds = f"{schema}.{LegalHold._meta.db_table}"
    keys = f"{schema}.{SubjectKey._meta.db_table}"
    user_type = quote_literal(user_resource_type)
    subject_lock = SUBJECT_LOCK_SQL.replace("%s", "subject")
    days = int(min_retention_days)

    def entry_first(action: str, resource_type: str, argument: str, why: str, refusal: str) -> str:
        """The refusal unless this transaction wrote the action's entry about the argument
        first (an entry's time is its transaction's), giving the same reason (`why`, the
        metadata's key) as the call."""
        return f"""IF NOT EXISTS (SELECT FROM {entries} e WHERE e.action = '{action}'
                    AND e.resource_type = '{resource_type}' AND e.resource_id = {argument}::text
                    AND e.metadata ->> '{why}' = why AND e.created_at >= now()) THEN
                RAISE EXCEPTION '{refusal} with its audit entry only', {argument}
                    USING ERRCODE = 'insufficient_privilege';
            END IF;"""

    release_first = entry_first(
        "audit.hold_released", "legal_hold", "hold", "reason", "legal hold % is released"
    )
    erasure_first = entry_first(
        "audit.subject_erased", ERASURE_TYPE, "subject", "basis", "subject % is erased"
    )

    # The month a purge or a drop is about, and the last id of its archive.
    month_bounds = f"""
            lower timestamptz := month::timestamp AT TIME ZONE 'UTC';
            upper timestamptz := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            archived bigint := (SELECT a.last_id FROM {archives} a WHERE a.month = $1);"""  # noqa: S608
    in_month = "e.created_at >= lower AND e.created_at < upper"
    held = held_sql(holds)
    # A SECURITY DEFINER function runs with the owner's rights: it names its tables in full and
    # searches pg_catalog first and pg_temp last, so that no object a caller can create is
    # used in their place (the trigger it fires still finds the schema's tables).
    header = f"LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema}, pg_temp"
    columns = ", ".join(CHECKPOINT_FIELDS)
    entry_columns = ", ".join(ENTRY_COLUMNS)
    appended = ", ".join(
        f"coalesce({column}, '')" if column in integrity.LATER_FIELDS else column
        for column in ENTRY_COLUMNS
    )
    return [
        # Runs with the caller's rights (its INSERT on the entry columns). A statement that
        # PL/pgSQL runs keeps its plan for the session: sent as SQL, this INSERT was planned
        # again for every entry, which cost more than writing it. A column added since the
        # caller's code was written is "" (what that code digested): processes not restarted
        # yet after a `migrate` keep writing.
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_append(shared json, rows json)
        RETURNS TABLE (id bigint, created_at timestamptz) LANGUAGE plpgsql AS $$
        BEGIN
            RETURN QUERY WITH added AS (
                INSERT INTO {entries} ({entry_columns})
                SELECT {appended}
                FROM json_populate_recordset(json_populate_record(NULL::{entries}, shared), rows)
                RETURNING {entries}.id, {entries}.created_at
            ) SELECT added.id, added.created_at FROM added;
        END $$
        """,  # noqa: S608
        # The purge of a prefix of ids, which the purge by month replaced.
        f"DROP FUNCTION IF EXISTS {schema}.audit_purge(bigint)",
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_purge(month date, ids bigint[]) RETURNS bigint
        {header} AS $$
        DECLARE
            {month_bounds}
            deleted bigint;
        BEGIN
            LOCK TABLE {holds} IN SHARE MODE;  -- no hold placed between the check and the delete
            IF EXISTS (SELECT FROM {entries} e WHERE {in_month} AND e.id = ANY(ids)
                    AND (archived IS NULL OR e.id > archived)) THEN
                RAISE EXCEPTION 'audit entries of % are not all archived', month
                    USING ERRCODE = '{NOT_ARCHIVED}';
            END IF;
            IF EXISTS (SELECT FROM {entries} e WHERE {in_month} AND e.id = ANY(ids)
                    AND e.created_at > now() - interval '{days} days') THEN
                RAISE EXCEPTION 'audit entries younger than {days} days are kept'
                    USING ERRCODE = '{TOO_YOUNG}';
            END IF;
            IF EXISTS (SELECT FROM {entries} e WHERE {in_month} AND e.id = ANY(ids) AND {held})
            THEN
                RAISE EXCEPTION 'a legal hold keeps audit entries of %', month
                    USING ERRCODE = '{HELD}';
            END IF;
            INSERT INTO {grants} (transaction_id) VALUES (txid_current());
            DELETE FROM {entries} e WHERE {in_month} AND e.id = ANY(ids);
            GET DIAGNOSTICS deleted = ROW_COUNT;
            DELETE FROM {grants} WHERE transaction_id = txid_current();
            RETURN deleted;
        END $$
        """,  # noqa: S608
        # A month whose every entry is past retention, archived and held by no hold leaves by
        # its partition: detached and dropped, a moment's lock instead of a million deletes.
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_drop_month(month date) RETURNS bigint
        {header} SET lock_timeout = '{partitions.LOCK_WAIT}' AS $$
        DECLARE
            {month_bounds}
            part regclass := to_regclass(
                format('{schema}.%I', '{partitions.ENTRIES}_p' || to_char(month, 'YYYY_MM')));
            dropped bigint;
        BEGIN
            IF part IS NULL OR NOT EXISTS (SELECT FROM pg_inherits i
                    WHERE i.inhrelid = part AND i.inhparent = '{entries}'::regclass) THEN
                RAISE EXCEPTION 'audit entries of % have no partition of their own', month
                    USING ERRCODE = 'undefined_table';
            END IF;
            -- Neither a hold placed nor an entry written into the month between the checks and
            -- the drop; reads go on.
            LOCK TABLE {holds} IN SHARE MODE;
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', part);
            IF archived IS NULL
                OR EXISTS (SELECT FROM {entries} e WHERE {in_month} AND e.id > archived) THEN
                RAISE EXCEPTION 'audit entries of % are not all archived', month
                    USING ERRCODE = '{NOT_ARCHIVED}';
            END IF;
            IF upper > now() - interval '{days} days' THEN
                RAISE EXCEPTION 'audit entries younger than {days} days are kept'
                    USING ERRCODE = '{TOO_YOUNG}';
            END IF;
            IF EXISTS (SELECT FROM {entries} e WHERE {in_month} AND {held}) THEN
                RAISE EXCEPTION 'a legal hold keeps audit entries of %', month
                    USING ERRCODE = '{HELD}';
            END IF;
            EXECUTE format('SELECT count(*) FROM %s', part) INTO dropped;
            EXECUTE format('ALTER TABLE {entries} DETACH PARTITION %s', part);
            EXECUTE format('DROP TABLE %s', part);
            RETURN dropped;
        END $$
        """,  # noqa: S608
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_seal_boundary() RETURNS bigint {header} AS $$
        BEGIN
            LOCK TABLE {entries} IN SHARE MODE;
            RETURN (SELECT max(id) FROM {entries});
        END $$
        """,  # noqa: S608
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_add_checkpoint(
            first_id bigint, last_id bigint, row_count integer, rows_hash text,
            previous_digest text, digest text
        ) RETURNS bigint {header} AS $$
        DECLARE
            previous record;
            sealed record;
            earlier timestamptz;
            added bigint;
        BEGIN
            SELECT c.last_id, c.digest, c.newest_at, c.max_lag INTO previous
                FROM {checkpoints} c ORDER BY c.id DESC LIMIT 1;
            SELECT count(*) AS n, min(e.created_at) AS oldest, max(e.created_at) AS newest
                INTO sealed FROM {entries} e WHERE e.id BETWEEN first_id AND last_id;
            IF (previous.last_id IS NOT NULL
                    AND (first_id <> previous.last_id + 1 OR previous_digest <> previous.digest))
                OR (previous.last_id IS NULL AND previous_digest <> '{integrity.GENESIS}')
                OR row_count <> sealed.n OR sealed.n = 0
                OR last_id > (SELECT max(e.id) FROM {entries} e)
            THEN
                RAISE EXCEPTION 'checkpoint %..% is not the next link over existing entries',
                    first_id, last_id USING ERRCODE = '{NOT_NEXT}';
            END IF;
            -- The times (audit/models.py Checkpoint): after a checkpoint without them, the
            -- newest entry before this range is read once (the created_at index, from its end).
            earlier := previous.newest_at;
            IF previous.last_id IS NOT NULL AND earlier IS NULL THEN
                earlier := (SELECT max(e.created_at) FROM {entries} e WHERE e.id < first_id);
            END IF;
            INSERT INTO {checkpoints} ({columns}, digest, oldest_at, newest_at, max_lag)
            VALUES (
                first_id, last_id, row_count, rows_hash, previous_digest, digest, sealed.oldest,
                greatest(sealed.newest, earlier),
                greatest(greatest(sealed.newest, earlier) - sealed.oldest, previous.max_lag)
            )
            RETURNING id INTO added;
            RETURN added;
        END $$
        """,  # noqa: S608
        partitions.function_sql(schema),
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_record_archive(
            month date, first_id bigint, last_id bigint, row_count bigint, manifest text,
            manifest_sha256 text
        ) RETURNS bigint {header} AS $$
        DECLARE
            lower timestamptz := month::timestamp AT TIME ZONE 'UTC';
            upper timestamptz := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            found record;
            added bigint;
        BEGIN
            SELECT count(*) AS n, min(e.id) AS first INTO found FROM {entries} e
                WHERE e.created_at >= lower AND e.created_at < upper AND e.id <= last_id;
            IF date_trunc('month', month) <> month OR upper > now()
                OR found.n <> row_count OR found.first <> first_id
                OR NOT EXISTS (SELECT FROM {entries} e WHERE e.id = last_id
                    AND e.created_at >= lower AND e.created_at < upper)
            THEN
                RAISE EXCEPTION 'the archive of % does not match its entries', month
                    USING ERRCODE = '{NOT_ARCHIVED}';
            END IF;
            INSERT INTO {archives} (month, first_id, last_id, row_count, manifest,
                manifest_sha256)
            VALUES (month, first_id, last_id, row_count, manifest, manifest_sha256)
            RETURNING id INTO added;
            RETURN added;
        END $$
        """,  # noqa: S608
        # A hold ends only with its audit entry, written since this transaction began (an
        # entry's time is its statement's): the role cannot release one quietly.
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_release_hold(
            hold bigint, by_email text, why text
        ) RETURNS void {header} AS $$
        BEGIN
            {release_first}
            UPDATE {holds} h SET released_at = now(), released_by_email = by_email,
                release_reason = why
            WHERE h.id = hold AND h.released_at IS NULL;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'legal hold % is not active', hold
                    USING ERRCODE = 'no_data_found';
            END IF;
        END $$
        """,  # noqa: S608
        f"""
        CREATE OR REPLACE FUNCTION {schema}.audit_erase_subject(
            subject bigint, by_email text, why text
        ) RETURNS bigint {header} AS $$
        DECLARE
            erased bigint;
        BEGIN
            {erasure_first}
            -- No hold placed, and no key made for them, until this commits (in this order,
            -- as a writer placing a hold takes them).
            LOCK TABLE {holds} IN SHARE MODE;
            PERFORM pg_advisory_xact_lock({subject_lock});
            IF EXISTS (SELECT FROM {holds} h WHERE h.released_at IS NULL AND h.user_id = subject)
                OR EXISTS (SELECT FROM {entries} e WHERE (e.user_id = subject
                    OR (e.resource_type = {user_type} AND e.resource_id = subject::text))
                    AND {held}) THEN
                RAISE EXCEPTION 'a legal hold keeps entries of subject %', subject
                    USING ERRCODE = '{HELD}';
            END IF;
            UPDATE {keys} k SET wrapped = NULL, erased_at = now(), erased_by_email = by_email,
                basis = why
            WHERE k.subject = $1 AND k.erased_at IS NULL;
            GET DIAGNOSTICS erased = ROW_COUNT;
            RETURN erased;
        END $$
        """,  # noqa: S608
        f"REVOKE ALL ON FUNCTION {', '.join(FUNCTIONS)} FROM PUBLIC",
    ]


def grant_sql(schema: str, role: str) -> list[str]:
    append_only = ", ".join(f"{schema}.{table}" for table in triggers.TABLES)
    holds = f"{schema}.{LegalHold._meta.db_table}"
    entries = f"{schema}.{AuditLog._meta.db_table}"
    # Entries take their id and time from the database, never from the application.
    entry_columns = ", ".join(ENTRY_COLUMNS)
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE ALL ON {append_only} FROM {role}",
        f"GRANT SELECT ON {append_only} TO {role}",
        f"GRANT INSERT ON {schema}.{AdminAction._meta.db_table} TO {role}",
        f"GRANT INSERT ({entry_columns}) ON {entries} TO {role}",
        f"REVOKE ALL ON {schema}.{RetentionGrant._meta.db_table} FROM {role}",
        # A hold is placed, and released once through audit_release_hold(): never deleted,
        # nor its terms rewritten.
        f"REVOKE ALL ON {holds} FROM {role}",
        f"GRANT SELECT, INSERT ON {holds} TO {role}",
        # A person's key is made, and destroyed only through audit_erase_subject().
        f"REVOKE ALL ON {schema}.{SubjectKey._meta.db_table} FROM {role}",
        f"GRANT SELECT, INSERT ON {schema}.{SubjectKey._meta.db_table} TO {role}",
        # The partitions (audit/partitions.py): only through the partitioned table.
        f"""
        DO $$ DECLARE part regclass; BEGIN
            FOR part IN SELECT inhrelid FROM pg_inherits WHERE inhparent = '{entries}'::regclass
            LOOP
                EXECUTE format('REVOKE ALL ON %s FROM {role}', part);
            END LOOP;
        END $$
        """,  # noqa: S608
        f"GRANT EXECUTE ON FUNCTION {', '.join(FUNCTIONS)} TO {role}",
    ]


def set_up(connection, *, app_role: str | None) -> None:
    """Make the functions, and grant the application role (when it is not the owner) what it
    may do. Run as the owner, after migrations (none while the audit tables are not there)."""
    if AuditLog._meta.db_table not in connection.introspection.table_names():
        return
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    # One transaction: between a REVOKE and the GRANT after it, the application's role would
    # be refused what it may do.
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SELECT current_schema(), current_user")
        schema, owner = cursor.fetchone()
        from audit.subjects import user_resource_type

        statements = functions_sql(
            quote(schema), settings.AUDIT_MIN_RETENTION_DAYS, user_resource_type()
        )
        if app_role and app_role != owner:
            statements += grant_sql(quote(schema), quote(app_role))
        for sql in statements:
            cursor.execute(sql)
    partitions.add_partitions(using=connection.alias)


@contextmanager
def reconnected(connection, **credentials):
    """The connection closed and opened again with other credentials (USER, HOST, ...) for the
    block, then as before."""
    saved = {key: connection.settings_dict[key] for key in credentials}
    connection.close()
    connection.settings_dict.update(credentials)
    try:
        yield connection
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@contextmanager
def connected_as_owner(alias: str):
    """The connection `alias` logged in as the owner role for the block (the same database:
    the owner URL's name is not used). Yields the application's role."""
    connection = connections[alias]
    app_role = connection.settings_dict["USER"]
    owner = settings.DATABASE_OWNER
    if connection.vendor != "postgresql" or owner.get("USER", app_role) == app_role:
        yield app_role
        return
    credentials = {key: owner.get(key) or "" for key in _CREDENTIALS}
    with reconnected(connection, **credentials, OPTIONS=owner.get("OPTIONS") or {}):
        yield app_role
