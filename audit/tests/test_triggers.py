"""The audit tables are append-only in the database itself (migration 0002)."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit import services, triggers
from audit.models import AdminAction, Archive, AuditLog, Checkpoint, RetentionGrant
from audit.tests import helpers
from audit.tests.factories import AuditLogFactory

pytestmark = pytest.mark.django_db

skip_on_sqlite = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="TRUNCATE and transaction ids are PostgreSQL's"
)


def current_transaction_id() -> int | None:
    """What a RetentionGrant names: the PostgreSQL transaction (SQLite has one writer)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")
        return cursor.fetchone()[0]


@pytest.fixture
def rows_in_every_table():
    AuditLogFactory.create_batch(2)
    services.record_admin_action(AdminAction.Kind.TOOL, action="admin.audit_cleanup")
    services.seal_audit_log()
    Archive.objects.create(
        month="2026-01-01", first_id=1, last_id=1, row_count=1, manifest="m", manifest_sha256="0"
    )
    assert AuditLog.objects.exists()
    assert AdminAction.objects.exists()
    assert Checkpoint.objects.exists()


def refused(sql: str, params=None):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        helpers.run_sql(sql, params=params)


def test_triggers_are_installed_by_the_migrations():
    assert len(helpers.installed_triggers()) == 2 * len(triggers.TABLES)


@pytest.mark.parametrize("table", triggers.TABLES)
def test_raw_update_is_refused(rows_in_every_table, table):
    column = {
        "audit_auditlog": "action",
        "audit_adminaction": "action",
        "audit_archive": "manifest",
    }
    column = column.get(table, "rows_hash")

    refused(f"UPDATE {table} SET {column} = 'forged'")  # noqa: S608


@pytest.mark.parametrize("table", triggers.TABLES)
def test_raw_delete_is_refused(rows_in_every_table, table):
    count = helpers.run_count(table)

    refused(f"DELETE FROM {table}")  # noqa: S608

    assert helpers.run_count(table) == count


def test_orm_update_and_delete_are_refused_too(rows_in_every_table):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.update(description="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.all().delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Checkpoint.objects.all().delete()


def test_inserts_are_allowed():
    before = AuditLog.objects.count()

    AuditLogFactory()

    assert AuditLog.objects.count() == before + 1


@pytest.mark.postgres
@skip_on_sqlite
@pytest.mark.parametrize("table", triggers.TABLES)
def test_truncate_is_refused_on_postgresql(rows_in_every_table, table):
    refused(f"TRUNCATE {table}")


@pytest.mark.postgres
@skip_on_sqlite
def test_a_retention_grant_of_another_transaction_does_not_permit_deletes(rows_in_every_table):
    RetentionGrant.objects.create(transaction_id=current_transaction_id() + 1000)

    refused("DELETE FROM audit_auditlog")


def test_a_retention_grant_in_the_transaction_permits_the_delete(rows_in_every_table):
    """The single exception, used by the retention cleanup only."""
    grant = RetentionGrant.objects.create(transaction_id=current_transaction_id())

    helpers.run_sql("DELETE FROM audit_auditlog")
    grant.delete()

    assert not AuditLog.objects.exists()
    refused("DELETE FROM audit_checkpoint")
