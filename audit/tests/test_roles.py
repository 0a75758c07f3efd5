"""The application's own database role cannot rewrite the trail: `migrate`, run as the owner,
leaves it SELECT and INSERT on the audit tables and the owner's two functions, no more."""

import uuid
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings

from audit import services
from audit.apps import check_owner_role_is_not_the_app_role
from audit.models import AuditLog
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import age_entries, run_sql
from invoicegen.billing.tests.factories import InvoiceFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the role's grants must be committed to count
    pytest.mark.skipif(connection.vendor != "postgresql", reason="roles are PostgreSQL's"),
]


@contextmanager
def logged_in_as(role: str):
    """The test's connection logged in as `role` (same database), as the application is."""
    saved = connection.settings_dict["USER"]
    connection.close()
    connection.settings_dict["USER"] = role
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["USER"] = saved


@pytest.fixture(scope="module")
def app_role(django_db_setup, django_db_blocker):
    """A login role for the application; the test's own (superuser) role is the owner, and
    `migrate` run from the application's connection grants the new role what it may do."""
    role = f"invoicegen_app_{uuid.uuid4().hex[:12]}"
    with django_db_blocker.unblock():
        run_sql(f"CREATE ROLE {role} LOGIN")
        with override_settings(DATABASE_OWNER=dict(connection.settings_dict)), logged_in_as(role):
            call_command("migrate", verbosity=0)
        yield role
        run_sql(f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO audit_retentiongrant (transaction_id) VALUES (txid_current())",
        "DELETE FROM audit_auditlog WHERE id > 0",
        "DELETE FROM audit_checkpoint",
        "UPDATE audit_auditlog SET action = 'forged'",
        "TRUNCATE audit_auditlog",
        "TRUNCATE audit_adminaction",
        "ALTER TABLE audit_auditlog DISABLE TRIGGER audit_auditlog_append_only",
        "ALTER TABLE audit_auditlog DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_auditlog_append_only ON audit_auditlog",
        "DROP TABLE audit_auditlog",
        "CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    ],
)
def test_the_app_role_cannot_rewrite_the_trail(app_role, sql):
    AuditLogFactory.create_batch(3)
    count = AuditLog.objects.count()

    with (
        logged_in_as(app_role),
        pytest.raises(DatabaseError, match=r"permission denied|must be owner"),
        transaction.atomic(),
    ):
        run_sql(sql)

    assert AuditLog.objects.count() == count


def test_the_app_role_runs_the_product_and_appends_to_the_trail(app_role):
    invoice = InvoiceFactory()
    with logged_in_as(app_role):
        invoice.client_name = "Renamed"
        invoice.save(update_fields=["client_name", "updated_at"])  # its entry rides along
        entry = services.log("invoice.sent", target=invoice)
        checkpoint = services.seal_audit_log()  # through the owner's audit_seal_boundary()

    assert checkpoint.last_id == entry.id
    assert AuditLog.objects.filter(action="invoice.updated").count() == 1
    assert services.check_audit_log().ok


def test_the_app_role_purges_old_sealed_entries_through_the_owners_function(app_role):
    AuditLogFactory.create_batch(3)
    age_entries(days=400)
    services.seal_audit_log()
    young = AuditLogFactory()

    with logged_in_as(app_role):
        result = services.cleanup_audit_logs(days=365)

    assert result.deleted == 3
    assert AuditLog.objects.filter(pk=young.pk).exists()
    assert services.check_audit_log().ok


@pytest.mark.parametrize("aged", [True, False], ids=["not sealed", "too young"])
def test_the_owners_purge_refuses_young_or_unsealed_entries(app_role, aged):
    AuditLogFactory.create_batch(2)
    services.seal_audit_log()
    newest = AuditLogFactory()
    if aged:  # old enough, but the newest is not sealed yet
        age_entries(days=400)
    count = AuditLog.objects.count()

    expected = "not all sealed" if aged else "younger than 365 days"
    with logged_in_as(app_role), pytest.raises(DatabaseError, match=expected):
        run_sql("SELECT audit_purge(%s)", params=[newest.id if aged else newest.id - 1])

    assert AuditLog.objects.count() == count


def test_deploy_check_warns_when_one_role_owns_and_runs(settings):
    settings.DATABASE_OWNER = dict(connection.settings_dict)

    [warning] = check_owner_role_is_not_the_app_role(None)

    assert warning.id == "audit.W001"
    assert "DATABASE_OWNER_URL" in warning.hint


def test_deploy_check_is_quiet_with_an_owner_role_of_its_own(settings):
    settings.DATABASE_OWNER = {**connection.settings_dict, "USER": "invoicegen_owner"}

    assert check_owner_role_is_not_the_app_role(None) == []
