"""The application's own database role cannot rewrite the trail: `migrate`, run as the owner,
leaves it SELECT and INSERT on the audit tables and the owner's two functions, no more."""

import uuid

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from audit import archive, holds, partitions, retention, services, subjects
from audit.apps import check_app_role_cannot_rewrite_the_trail
from audit.models import Archive, AuditLog, LegalHold, SubjectKey
from audit.roles import reconnected
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import (
    age_entries,
    entries_in,
    months_ago,
    partitions_of,
    run_sql,
    seal_all,
)
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.tests.factories import InvoiceFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the role's grants must be committed to count
    pytest.mark.skipif(connection.vendor != "postgresql", reason="roles are PostgreSQL's"),
]


def logged_in_as(role: str):
    """The test's connection logged in as `role` (same database), as the application is."""
    return reconnected(connection, USER=role)


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
        # Each partition (audit/partitions.py), the default one and those made later.
        "UPDATE audit_auditlog_default SET action = 'forged'",
        "SELECT * FROM audit_auditlog_default",
        "INSERT INTO audit_auditlog_default (action) VALUES ('forged')",
        "DELETE FROM audit_auditlog_p{next_month}",
        "TRUNCATE audit_auditlog_p{next_month}",
        "ALTER TABLE audit_auditlog DETACH PARTITION audit_auditlog_default",
        "DROP TABLE audit_auditlog_p{next_month}",
        "CREATE TABLE audit_auditlog_p2001_01 PARTITION OF audit_auditlog"
        " FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')",
        "DELETE FROM audit_legalhold",
        "UPDATE audit_legalhold SET reason = 'rewritten'",
        "UPDATE audit_legalhold SET category = 'auth'",
        "UPDATE audit_legalhold SET released_at = now()",  # a release with no audit entry
        "UPDATE audit_subjectkey SET wrapped = NULL",  # an erasure with no audit entry
        "DELETE FROM audit_subjectkey",
        "INSERT INTO audit_archive (month, first_id, last_id, row_count, manifest,"
        " manifest_sha256) VALUES ('2099-12-01', 1, 1, 1, 'm', 's')",
        "INSERT INTO audit_auditlog (id) VALUES (1)",  # ids come from the database
        "INSERT INTO audit_auditlog (created_at) VALUES (now() - interval '400 days')",
        "INSERT INTO audit_checkpoint (first_id, last_id, row_count, rows_hash, previous_digest,"
        " digest, created_at) VALUES (1, 4611686018427387904, 0, '', '', '', now())",
    ],
)
def test_the_app_role_cannot_rewrite_the_trail(app_role, sql):
    sql = sql.format(next_month=f"{partitions.month_after(timezone.now().date(), 1):%Y_%m}")
    AuditLogFactory.create_batch(3)
    count = AuditLog.objects.count()

    with (
        logged_in_as(app_role),
        pytest.raises(DatabaseError, match=r"permission denied|must be owner|owner of table"),
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


def test_the_app_role_adds_partitions_through_the_owners_function(app_role, settings):
    settings.AUDIT_PARTITION_MONTHS_AHEAD = 6

    far = partitions.month_after(timezone.now().date(), 6)
    with logged_in_as(app_role):
        partitions.add_partitions()

    run_sql(f"SELECT count(*) FROM audit_auditlog_p{far:%Y_%m}")  # noqa: S608 (there, as the owner sees)
    with logged_in_as(app_role), pytest.raises(DatabaseError, match="permission denied"):
        run_sql(f"SELECT count(*) FROM audit_auditlog_p{far:%Y_%m}")  # noqa: S608


def test_the_app_role_purges_old_sealed_entries_through_the_owners_function(app_role):
    AuditLogFactory.create_batch(3)
    age_entries(days=400)
    services.seal_audit_log()
    young = AuditLogFactory()

    with logged_in_as(app_role):
        result = retention.cleanup_audit_logs(days=365)

    assert result.deleted == 3
    assert AuditLog.objects.filter(pk=young.pk).exists()
    assert services.check_audit_log().ok


@pytest.mark.parametrize(
    ("why", "expected"),
    [
        ("not archived", "not all archived"),
        ("written after its archive", "not all archived"),
        ("too young", "younger than 365 days"),
        ("held", "a legal hold keeps"),
    ],
)
def test_the_owners_purge_and_drop_refuse_what_must_stay(app_role, why, expected):
    month = months_ago(2 if why == "too young" else 14)
    run_sql("SELECT audit_add_partitions(%s, %s)", params=[month, month])
    ids = entries_in(month, 2)
    seal_all()
    if why != "not archived":
        archive.archive_month(month)
    if why == "written after its archive":
        ids += entries_in(month, 1)  # a clock gone back
        seal_all()
    if why == "held":
        LegalHold.objects.create(reason="case", placed_by_email="x@example.com")
    count = AuditLog.objects.count()

    with logged_in_as(app_role), pytest.raises(DatabaseError, match=expected):
        run_sql("SELECT audit_purge(%s, %s::bigint[])", params=[month, ids])
    with logged_in_as(app_role), pytest.raises(DatabaseError, match=expected):
        run_sql("SELECT audit_drop_month(%s)", params=[month])

    assert AuditLog.objects.count() == count
    assert f"audit_auditlog_p{month:%Y_%m}" in partitions_of()


def test_the_owners_archive_record_must_match_the_entries(app_role):
    AuditLogFactory.create_batch(2)
    moment = age_entries(days=400)
    checkpoint = services.seal_audit_log()
    month = moment.date().replace(day=1)
    record = "SELECT audit_record_archive(%s, %s, %s, %s, 'm', 's')"

    with logged_in_as(app_role), pytest.raises(DatabaseError, match="does not match"):
        run_sql(record, params=[month, checkpoint.first_id, checkpoint.last_id, 5])
    with logged_in_as(app_role), pytest.raises(DatabaseError, match="does not match"):
        run_sql(record, params=["2099-01-01", checkpoint.first_id, checkpoint.last_id, 2])

    assert not Archive.objects.exists()
    with logged_in_as(app_role):
        run_sql(record, params=[month, checkpoint.first_id, checkpoint.last_id, 2])
    assert Archive.objects.get().row_count == 2


@pytest.mark.parametrize(
    "forgery",
    ["a range past the last entry", "a range that skips entries", "a fork of the chain"],
)
def test_the_owners_checkpoint_function_adds_only_the_next_link_over_existing_entries(
    app_role, forgery
):
    AuditLogFactory.create_batch(3)
    first = services.seal_audit_log()
    AuditLogFactory.create_batch(2)
    after = first.last_id + 1
    arguments = {
        "a range past the last entry": [after, 2**62, 2, "", first.digest, "x"],
        "a range that skips entries": [after + 1, after + 1, 1, "", first.digest, "x"],
        "a fork of the chain": [after, after + 1, 2, "", first.previous_digest, "x"],
    }[forgery]

    with logged_in_as(app_role), pytest.raises(DatabaseError, match="not the next link"):
        run_sql("SELECT audit_add_checkpoint(%s, %s, %s, %s, %s, %s)", params=arguments)

    assert services.seal_audit_log().first_id == after
    assert services.check_audit_log().ok


def test_sealers_racing_with_other_boundaries_add_one_link_and_the_chain_holds(race):
    AuditLogFactory.create_batch(6)
    sizes = iter([2, 4])

    outcomes = race(lambda: services.seal_audit_log(max_rows=next(sizes)), 2)

    assert sum(outcome is not None for outcome in outcomes) >= 1
    assert services.check_audit_log().ok


def test_deploy_check_warns_when_the_application_may_rewrite_the_trail():
    [warning] = check_app_role_cannot_rewrite_the_trail(None, databases=["default"])

    assert warning.id == "audit.W001"
    assert "DATABASE_OWNER_URL" in warning.hint


def test_deploy_check_is_quiet_for_an_application_role_of_its_own(app_role):
    with logged_in_as(app_role):
        assert check_app_role_cannot_rewrite_the_trail(None, databases=["default"]) == []


def test_the_app_role_places_and_releases_holds_through_their_services(app_role):
    with logged_in_as(app_role):
        hold = holds.place_legal_hold(reason="a case", category="auth", via="api")
        released = holds.release_legal_hold(hold, reason="closed", via="api")

    assert released.released_at is not None
    assert LegalHold.objects.get().release_reason == "closed"


def test_a_hold_is_released_only_in_the_transaction_of_its_audit_entry(app_role):
    hold = LegalHold.objects.create(reason="case", placed_by_email="x@example.com")
    services.log("audit.hold_released", target=("legal_hold", hold.pk))  # another transaction

    with logged_in_as(app_role), pytest.raises(DatabaseError, match="with its audit entry only"):
        run_sql("SELECT audit_release_hold(%s, 'x@example.com', 'quietly')", params=[hold.pk])

    assert LegalHold.objects.get().released_at is None


@pytest.mark.parametrize(
    ("action", "target", "reason", "call"),
    [
        ("audit.hold_released", "legal_hold", "reason", "SELECT audit_release_hold(%s, %s, %s)"),
        ("audit.subject_erased", "subject", "basis", "SELECT audit_erase_subject(%s, %s, %s)"),
    ],
)
def test_the_owners_functions_want_the_reason_their_entry_gives(
    app_role, action, target, reason, call
):
    """An entry written for the record, and another reason given to the function: refused."""
    grace = UserFactory(email="grace@example.com")
    AuditLogFactory(context=request_context(user_id=grace.pk, user_email=grace.email))
    hold = LegalHold.objects.create(reason="case", placed_by_email="x@example.com")
    about = hold.pk if target == "legal_hold" else grace.pk

    with logged_in_as(app_role), transaction.atomic():
        services.log(action, target=(target, about), metadata={reason: "the case closed"})
        with pytest.raises(DatabaseError, match="with its audit entry only"), transaction.atomic():
            run_sql(call, params=[about, "x@example.com", "quietly"])

    assert LegalHold.objects.get().released_at is None
    assert SubjectKey.objects.get().wrapped is not None


def test_the_app_role_erases_a_person_through_the_owners_function(app_role):
    grace = UserFactory(email="grace@example.com")
    with logged_in_as(app_role):
        entry = AuditLogFactory(context=request_context(user_id=grace.pk, user_email=grace.email))
        erasure = subjects.erase_subject(grace.pk, basis="a request", via="api")

    assert erasure["keys"] == 1
    assert AuditLog.objects.get(pk=entry.pk).user_email == "[erased]"
    assert services.check_audit_log().ok


def test_a_person_is_erased_only_in_the_transaction_of_its_audit_entry(app_role):
    grace = UserFactory(email="grace@example.com")
    AuditLogFactory(context=request_context(user_id=grace.pk, user_email=grace.email))
    services.log("audit.subject_erased", target=("subject", grace.pk))  # another transaction

    with logged_in_as(app_role), pytest.raises(DatabaseError, match="with its audit entry only"):
        run_sql("SELECT audit_erase_subject(%s, 'x@example.com', 'quietly')", params=[grace.pk])

    assert SubjectKey.objects.get().wrapped is not None


def test_the_owners_erasure_refuses_what_a_hold_keeps(app_role):
    """The check under the lock: a hold the service's own check did not see (placed after)."""
    grace = UserFactory(email="grace@example.com")
    AuditLogFactory(context=request_context(user_id=grace.pk, user_email=grace.email))
    LegalHold.objects.create(reason="case", user_id=grace.pk, placed_by_email="x@example.com")

    with logged_in_as(app_role), transaction.atomic():
        services.log(
            "audit.subject_erased", target=("subject", grace.pk), metadata={"basis": "a request"}
        )
        with pytest.raises(subjects.Held):
            subjects._erase_as_owner(grace.pk, "x@example.com", "a request")

    assert SubjectKey.objects.get().wrapped is not None
