"""The SQL of the append-only triggers (installed by migration 0002).

UPDATE, DELETE and TRUNCATE are refused on the audit tables whatever the client; the single
exception is a DELETE in a transaction that holds a RetentionGrant (the retention cleanup).
PostgreSQL uses statement-level triggers, so a large cleanup pays for one check per statement,
not one per row; SQLite has only row-level triggers.
"""

TABLES = ("audit_auditlog", "audit_adminaction", "audit_checkpoint", "audit_archive")

POSTGRES_FUNCTIONS = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_retentiongrant WHERE transaction_id = txid_current()
    ) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE OR REPLACE FUNCTION audit_protect(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = tbl);
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %s FOR EACH STATEMENT '
        'EXECUTE FUNCTION audit_refuse_change()', name || '_append_only', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %s FOR EACH STATEMENT '
        'EXECUTE FUNCTION audit_refuse_change()', name || '_no_truncate', tbl);
END
$$;
"""


def _protect_postgres(tables) -> str:
    """A statement fires the statement-level triggers of the table it names only: each
    partition of the entries (audit/partitions.py) is protected as well as the partitioned
    table. A table a migration has not made yet is left out."""
    names = ", ".join(f"'{table}'" for table in tables)
    return f"""
    SELECT audit_protect(c.oid) FROM pg_class c
    WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(ARRAY[{names}]) AS name)
        OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '{TABLES[0]}'::regclass)
    """


def _refuse_sqlite(operation: str, table: str) -> str:
    return (
        f"SELECT RAISE(ABORT, 'audit trail is append-only: {operation} on {table} is not allowed');"
    )


def install_sql(vendor: str, tables=TABLES) -> list[str]:
    """The triggers on `tables` (those a migration has made so far, when it is one)."""
    if vendor == "postgresql":
        return [POSTGRES_FUNCTIONS, _protect_postgres(tables)]
    if vendor == "sqlite":
        return [
            sql
            for table in tables
            for sql in (
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN {_refuse_sqlite('UPDATE', table)} END;",
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "WHEN NOT EXISTS (SELECT 1 FROM audit_retentiongrant) "
                f"BEGIN {_refuse_sqlite('DELETE', table)} END;",
            )
        ]
    raise NotImplementedError(f"No append-only triggers for {vendor}.")


def uninstall_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        # Every trigger that calls the function goes with it, the partitions' included.
        return [
            "DROP FUNCTION IF EXISTS audit_refuse_change() CASCADE;",
            "DROP FUNCTION IF EXISTS audit_protect(regclass);",
        ]
    return [
        *(f"DROP TRIGGER IF EXISTS {t}_no_update;" for t in TABLES),
        *(f"DROP TRIGGER IF EXISTS {t}_no_delete;" for t in TABLES),
    ]


def reinstall(apps, schema_editor):
    """For migrations that change an audit table: SQLite does so by making the table anew,
    which drops its triggers."""
    for sql in [
        *uninstall_sql(vendor := schema_editor.connection.vendor),
        *install_sql(vendor, existing_tables(schema_editor.connection)),
    ]:
        schema_editor.execute(sql, params=None)


def existing_tables(connection) -> list[str]:
    made = set(connection.introspection.table_names())
    return [table for table in TABLES if table in made]
