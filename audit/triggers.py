"""The SQL of the append-only triggers (installed by migration 0002).

UPDATE, DELETE and TRUNCATE are refused on the audit tables whatever the client; the single
exception is a DELETE in a transaction that holds a RetentionGrant (the retention cleanup).
PostgreSQL uses statement-level triggers, so a large cleanup pays for one check per statement,
not one per row; SQLite has only row-level triggers.
"""

TABLES = ("audit_auditlog", "audit_adminaction", "audit_checkpoint")

_POSTGRES_FUNCTION = """
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
"""


def _refuse_sqlite(operation: str, table: str) -> str:
    return (
        f"SELECT RAISE(ABORT, 'audit trail is append-only: {operation} on {table} is not allowed');"
    )


def install_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [_POSTGRES_FUNCTION] + [
            sql
            for table in TABLES
            for sql in (
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();",
            )
        ]
    if vendor == "sqlite":
        return [
            sql
            for table in TABLES
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
        return [
            *(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t};" for t in TABLES),
            *(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t};" for t in TABLES),
            "DROP FUNCTION IF EXISTS audit_refuse_change();",
        ]
    return [
        *(f"DROP TRIGGER IF EXISTS {t}_no_update;" for t in TABLES),
        *(f"DROP TRIGGER IF EXISTS {t}_no_delete;" for t in TABLES),
    ]


def reinstall(apps, schema_editor):
    """For migrations that change an audit table: SQLite does so by making the table anew,
    which drops its triggers."""
    vendor = schema_editor.connection.vendor
    for sql in [*uninstall_sql(vendor), *install_sql(vendor)]:
        schema_editor.execute(sql, params=None)
