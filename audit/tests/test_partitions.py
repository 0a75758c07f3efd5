"""Monthly partitions of the entries on PostgreSQL (audit/partitions.py): made by the migration,
ahead by `migrate` and the beat task, each append-only, a default partition for the rows no
month takes, and an existing trail partitioned in place."""

import datetime
import logging

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit import partitions
from audit import tasks as audit_tasks
from audit.models import AuditLog
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import (
    age_entries,
    entry_of_old_code,
    fetch,
    migrate_to_the_latest,
    partitions_of,
    run_sql,
    seal_all,
)
from audit.verification import verify_audit_log

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's"),
]


@pytest.fixture(autouse=True)
def no_partition_before_left():
    """A test that migrates a trail with entries leaves the partition of everything before
    next month: later tests make months of their own there."""
    yield
    run_sql(f"DROP TABLE IF EXISTS {partitions.BEFORE}")


def month_name(moment: datetime.datetime) -> str:
    return f"audit_auditlog_p{moment:%Y_%m}"


def where(entry_id: int) -> str:
    return fetch("SELECT tableoid::regclass::text FROM audit_auditlog WHERE id = %s", [entry_id])[
        0
    ][0]


def test_the_entries_are_partitioned_by_month_ahead_with_a_default(settings):
    now = timezone.now().astimezone(datetime.UTC)
    names = partitions_of()

    assert fetch(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'audit_auditlog'::regclass AND contype = 'p'"
    ) == [("PRIMARY KEY (id, created_at)",)]
    assert names[month_name(now)] == (
        f"FOR VALUES FROM ('{now:%Y-%m}-01 00:00:00+00') TO "
        f"('{partitions.month_after(now.date(), 1)} 00:00:00+00')"
    )
    ahead = partitions.month_after(now.date(), settings.AUDIT_PARTITION_MONTHS_AHEAD)
    assert month_name(ahead) in names
    assert names["audit_auditlog_default"] == "DEFAULT"


def test_an_entry_lands_in_its_months_partition():
    entry = AuditLogFactory()

    assert where(entry.id) == month_name(entry.created_at.astimezone(datetime.UTC))
    assert AuditLog.objects.get(id=entry.id).digest == entry.digest


def test_the_beat_task_adds_the_months_ahead_once(settings):
    settings.AUDIT_PARTITION_MONTHS_AHEAD = 14
    far = partitions.month_after(timezone.now().date(), 14)
    assert month_name(far) not in partitions_of()

    assert audit_tasks.add_audit_partitions.delay().get() == 11  # three were there
    assert audit_tasks.add_audit_partitions.delay().get() == 0
    assert month_name(far) in partitions_of()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {table} SET action = 'forged'",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
    ],
)
@pytest.mark.parametrize("which", ["this month", "added later", "default"])
def test_every_partition_is_append_only(settings, sql, which):
    settings.AUDIT_PARTITION_MONTHS_AHEAD = 5
    partitions.add_partitions()
    now = timezone.now()
    table = {
        "this month": month_name(now),
        "added later": month_name(partitions.month_after(now.date(), 5)),
        "default": "audit_auditlog_default",
    }[which]
    AuditLogFactory()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql(sql.format(table=table))


def test_an_entry_no_month_takes_waits_in_the_default_partition_until_its_month_is_added(caplog):
    entry = AuditLogFactory()
    age_entries(days=400)  # a month without a partition
    seal_all()
    assert where(entry.id) == "audit_auditlog_default"

    with caplog.at_level(logging.ERROR, logger="audit.partitions"):
        assert partitions.add_partitions() == (0, 1)
    assert "1 audit entries lie outside every monthly partition" in caplog.text

    moment = AuditLog.objects.get(id=entry.id).created_at
    run_sql("SELECT * FROM audit_add_partitions(%s, %s)", params=[moment.date(), moment.date()])

    assert where(entry.id) == month_name(moment.astimezone(datetime.UTC))
    assert partitions.add_partitions() == (0, 0)
    assert verify_audit_log().ok
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql(f"DELETE FROM {month_name(moment.astimezone(datetime.UTC))}")  # noqa: S608


def test_the_function_refuses_to_make_months_far_ahead_or_many_at_once():
    for first, last in [("2026-01-01", "2099-01-01"), ("1990-01-01", "2000-01-01")]:
        with pytest.raises(DatabaseError, match="too far"), transaction.atomic():
            run_sql("SELECT * FROM audit_add_partitions(%s, %s)", params=[first, last])


def test_a_month_covered_by_an_older_partition_is_not_made_again():
    run_sql(
        "CREATE TABLE audit_auditlog_older PARTITION OF audit_auditlog"
        " FOR VALUES FROM ('2001-01-01') TO ('2002-01-01')"
    )

    assert fetch("SELECT added FROM audit_add_partitions('2001-03-01', '2001-05-01')") == [(0,)]
    assert not any(name.startswith("audit_auditlog_p2001") for name in partitions_of())


@pytest.mark.django_db(transaction=True)
def test_the_migration_partitions_a_trail_in_place():
    before, after = ("audit", "0006_resource_label"), ("audit", "0007_monthly_partitions")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    assert not partitions.is_partitioned()
    written = [entry_of_old_code() for _ in range(3)]
    age_entries(days=40, through_id=written[0].id)
    seal_all()
    rows = list(AuditLog.objects.order_by("id").values_list("id", "created_at", "digest"))
    run_sql("DROP FUNCTION audit_protect(regclass)")  # as in a database migrated before it

    executor.loader.build_graph()
    executor.migrate([after])

    assert partitions.is_partitioned()
    assert list(AuditLog.objects.order_by("id").values_list("id", "created_at", "digest")) == rows
    assert {where(entry.id) for entry in written} == {"audit_auditlog_before"}
    next_month = partitions.month_after(timezone.now().date(), 1)
    assert partitions_of()["audit_auditlog_before"] == (
        f"FOR VALUES FROM (MINVALUE) TO ('{next_month} 00:00:00+00')"
    )
    newer = entry_of_old_code()
    assert newer.id == rows[-1][0] + 1
    seal_all()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql("DELETE FROM audit_auditlog_before")
    migrate_to_the_latest(executor)
    assert verify_audit_log().ok


@pytest.mark.django_db(transaction=True)
def test_the_migration_back_makes_one_table_of_every_partition():
    executor = MigrationExecutor(connection)
    AuditLogFactory()
    age_entries(days=400)  # in the default partition
    AuditLogFactory()
    seal_all()
    rows = list(AuditLog.objects.order_by("id").values_list("id", "created_at", "digest"))

    executor.migrate([("audit", "0006_resource_label")])

    assert not partitions.is_partitioned()
    assert list(AuditLog.objects.order_by("id").values_list("id", "created_at", "digest")) == rows
    assert entry_of_old_code().id == rows[-1][0] + 1
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql("DELETE FROM audit_auditlog")
    executor.loader.build_graph()
    migrate_to_the_latest(executor)
    seal_all()
    assert verify_audit_log().ok
