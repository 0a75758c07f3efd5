"""Two database roles on PostgreSQL, so that the application cannot rewrite its own history.

The owner role (DATABASE_OWNER_URL) runs `migrate` and owns every table and function. The
application's role (DATABASE_URL) reads and writes the domain's tables but may only SELECT and
INSERT the audit tables: it cannot update, delete or truncate them, write a retention grant,
or alter, disable or drop their triggers (only an owner can). What it needs beyond that goes
through two SECURITY DEFINER functions of the owner, which check their own conditions:

- `audit_purge(through_id)` deletes the entries up to an id for the retention cleanup, and
  refuses if any of them is younger than AUDIT_MIN_RETENTION_DAYS or not sealed yet;
- `audit_seal_boundary()` waits (SHARE lock) until no transaction that wrote an entry is still
  open, and returns the highest id then committed: every id below it is final, so the seal
  never has to guess how long a transaction may stay open.

After every `migrate` (audit/management/commands/migrate.py) the functions are made again with
the current settings and the application role's privileges are granted again, new tables
included. With one role for both (a laptop, CI) the functions exist and nothing is revoked.
"""

from contextlib import contextmanager

from django.conf import settings
from django.db import connections

from audit.models import AdminAction, AuditLog, Checkpoint, RetentionGrant

# SQLSTATEs of the functions' refusals (class "AU", the project's own).
NOT_SEALED = "AU001"
TOO_YOUNG = "AU002"

_CREDENTIALS = ("USER", "PASSWORD", "HOST", "PORT")


def functions_sql(schema: str, min_retention_days: int) -> list[str]:
    entries, checkpoints = AuditLog._meta.db_table, Checkpoint._meta.db_table
    grants = RetentionGrant._meta.db_table
    # A SECURITY DEFINER function fixes its search_path: a caller's own schema first could
    # slip a look-alike table under the owner's privileges.
    header = f"LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp"
    # Table names and a number from settings, never input.
    return [
        f"""
        CREATE OR REPLACE FUNCTION audit_purge(through_id bigint) RETURNS bigint {header} AS $$
        DECLARE
            deleted bigint;
            newest timestamptz;
        BEGIN
            IF through_id > (SELECT coalesce(max(last_id), 0) FROM {checkpoints}) THEN
                RAISE EXCEPTION 'audit entries through id % are not all sealed', through_id
                    USING ERRCODE = '{NOT_SEALED}';
            END IF;
            INSERT INTO {grants} (transaction_id) VALUES (txid_current());
            WITH gone AS (DELETE FROM {entries} WHERE id <= through_id RETURNING created_at)
            SELECT count(*), max(created_at) INTO deleted, newest FROM gone;
            DELETE FROM {grants} WHERE transaction_id = txid_current();
            IF newest > now() - interval '{int(min_retention_days)} days' THEN
                RAISE EXCEPTION 'audit entries younger than {int(min_retention_days)} days are kept'
                    USING ERRCODE = '{TOO_YOUNG}';
            END IF;
            RETURN deleted;
        END $$
        """,  # noqa: S608
        f"""
        CREATE OR REPLACE FUNCTION audit_seal_boundary() RETURNS bigint {header} AS $$
        BEGIN
            LOCK TABLE {entries} IN SHARE MODE;
            RETURN (SELECT max(id) FROM {entries});
        END $$
        """,  # noqa: S608
        "REVOKE ALL ON FUNCTION audit_purge(bigint), audit_seal_boundary() FROM PUBLIC",
    ]


def grant_sql(schema: str, role: str) -> list[str]:
    audit_tables = ", ".join(m._meta.db_table for m in (AuditLog, AdminAction, Checkpoint))
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit_tables} FROM {role}",
        f"REVOKE ALL ON {RetentionGrant._meta.db_table} FROM {role}",
        f"GRANT EXECUTE ON FUNCTION audit_purge(bigint), audit_seal_boundary() TO {role}",
    ]


def set_up(connection, *, app_role: str | None) -> None:
    """Make the functions, and grant the application role (when it is not the owner) what it
    may do. Run as the owner, after migrations."""
    if connection.vendor != "postgresql":
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema(), current_user")
        schema, owner = cursor.fetchone()
        statements = functions_sql(quote(schema), settings.AUDIT_MIN_RETENTION_DAYS)
        if app_role and app_role != owner:
            statements += grant_sql(quote(schema), quote(app_role))
        for sql in statements:
            cursor.execute(sql)


@contextmanager
def connected_as_owner(alias: str):
    """The connection `alias` logged in as the owner role for the block (same database)."""
    connection = connections[alias]
    app_role = connection.settings_dict["USER"]
    owner = settings.DATABASE_OWNER
    if connection.vendor != "postgresql" or owner.get("USER", app_role) == app_role:
        yield app_role
        return
    saved = {key: connection.settings_dict[key] for key in _CREDENTIALS}
    connection.close()
    connection.settings_dict.update({key: owner.get(key) or "" for key in _CREDENTIALS})
    try:
        yield app_role
    finally:
        connection.close()
        connection.settings_dict.update(saved)
