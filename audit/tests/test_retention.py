"""The retention cleanup, the one delete path: entries past their category's retention, month by
month, archived and unheld, in batches or a month's partition at once, never below
AUDIT_MIN_RETENTION_DAYS, audited, re-runnable; the service, command and task."""

import io
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import archive, holds, retention, services
from audit import tasks as audit_tasks
from audit.apps import check_retention_by_category
from audit.models import Archive, AuditLog, Checkpoint, LegalHold, RetentionGrant
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import (
    age_entries,
    entries_after,
    entries_in,
    last_entry_id,
    months_ago,
    only_entry,
    partitions_of,
    run_sql,
    seal_all,
)
from audit.verification import verify_audit_log

pytestmark = pytest.mark.django_db

OLD = 400  # days: past the default retention (365)


def old_sealed_range(count: int) -> Checkpoint:
    """`count` more entries backdated OLD days, then sealed with what was not sealed yet."""
    mark = last_entry_id()
    AuditLogFactory.create_batch(count)
    age_entries(days=OLD, after_id=mark)
    return services.seal_audit_log()


def young_sealed_range(count: int) -> Checkpoint:
    AuditLogFactory.create_batch(count)
    return services.seal_audit_log()


def test_cleanup_deletes_sealed_entries_older_than_the_cutoff():
    old = old_sealed_range(3)
    young = young_sealed_range(2)
    kept = list(AuditLog.objects.filter(id__gt=old.last_id).values_list("id", flat=True))

    result = retention.cleanup_audit_logs(days=365)

    assert result.deleted == old.row_count
    assert not AuditLog.objects.filter(id__lte=old.last_id).exists()
    assert set(kept) <= set(AuditLog.objects.values_list("id", flat=True))
    assert AuditLog.objects.filter(id__range=(young.first_id, young.last_id)).count() == 2


def test_each_category_is_kept_as_long_as_its_own_retention_says(settings):
    settings.AUDIT_RETENTION_DAYS_BY_CATEGORY = {"auth": 500}
    mark = last_entry_id()
    login = AuditLogFactory(action="user.login")  # category auth
    others = AuditLogFactory.create_batch(2)
    age_entries(days=OLD, after_id=mark)
    services.seal_audit_log()

    result = retention.cleanup_audit_logs(days=365)

    assert result.deleted == 2
    assert list(AuditLog.objects.filter(id__lte=others[-1].id).values_list("id", flat=True)) == [
        login.id
    ]
    assert verify_audit_log().ok  # the removed entries are in the month's archive
    settings.AUDIT_RETENTION_DAYS_BY_CATEGORY = {"auth": 390}
    assert retention.cleanup_audit_logs(days=365).deleted == 1


def test_a_category_kept_fewer_days_than_the_minimum_is_a_system_check_error(settings):
    settings.AUDIT_RETENTION_DAYS_BY_CATEGORY = {"auth": 30, "nothing": 400, "security": 400}

    errors = {error.id: error.msg for error in check_retention_by_category(None)}

    assert set(errors) == {"audit.E003", "audit.E004"}
    assert "'nothing'" in errors["audit.E003"] and "auth 30 days" in errors["audit.E004"]


def test_old_entries_not_sealed_yet_are_kept():
    AuditLogFactory.create_batch(3)
    age_entries(days=OLD)
    count = AuditLog.objects.count()

    result = retention.cleanup_audit_logs(days=365)

    assert result.deleted == 0
    assert AuditLog.objects.filter(action="admin.audit_cleanup").count() == 1
    assert AuditLog.objects.count() == count + 1


def test_cleanup_deletes_in_batches_each_recorded_as_audit_purged():
    old = old_sealed_range(5)
    mark = last_entry_id()
    month = AuditLog.objects.get(id=old.first_id).created_at

    result = retention.cleanup_audit_logs(days=365, batch_size=2)

    purged = list(entries_after(mark, action="audit.purged"))
    assert result.deleted == old.row_count == 5
    assert [entry.metadata["deleted"] for entry in purged] == [2, 2, 1]
    assert purged[-1].metadata["last_id"] == old.last_id
    assert {entry.metadata["month"] for entry in purged} == {f"{month:%Y-%m}"}
    ids = [(entry.metadata["first_id"], entry.metadata["last_id"]) for entry in purged]
    assert ids == sorted(ids) and ids[0][0] == old.first_id


def test_cleanup_below_the_minimum_retention_is_refused(settings):
    settings.AUDIT_MIN_RETENTION_DAYS = 365
    old_sealed_range(2)
    count = AuditLog.objects.count()

    with pytest.raises(ValidationError) as refusal:
        retention.cleanup_audit_logs(days=30)

    assert list(refusal.value.message_dict) == ["days"]
    assert "at least 365 days" in refusal.value.message_dict["days"][0]
    assert AuditLog.objects.count() == count


def test_a_dry_run_deletes_nothing_and_reports_the_count():
    old = old_sealed_range(3)
    count = AuditLog.objects.count()
    mark = last_entry_id()

    result = retention.cleanup_audit_logs(days=365, dry_run=True)

    assert (result.deleted, result.dry_run) == (old.row_count, True)
    assert AuditLog.objects.count() == count + 1
    entry = only_entry(mark, "admin.audit_cleanup")
    assert entry.metadata["dry_run"] is True
    assert entry.metadata["deleted"] == old.row_count


def test_cleanup_is_recorded_as_admin_audit_cleanup():
    old = old_sealed_range(2)
    mark = last_entry_id()

    result = retention.cleanup_audit_logs(days=365)

    entry = only_entry(mark, "admin.audit_cleanup")
    assert entry.category == "audit"
    assert entry.metadata["days"] == 365
    assert entry.metadata["deleted"] == old.row_count
    assert entry.metadata["dry_run"] is False
    assert entry.metadata["cutoff"].startswith(result.cutoff.isoformat()[:19])


def test_the_trail_still_verifies_after_a_cleanup():
    old_sealed_range(3)
    old_sealed_range(2)
    young_sealed_range(2)
    AuditLogFactory()

    retention.cleanup_audit_logs(days=365, batch_size=2)

    assert verify_audit_log().ok
    assert services.seal_audit_log() is not None
    assert verify_audit_log().ok


def test_a_cleanup_can_be_run_again():
    old_sealed_range(3)
    retention.cleanup_audit_logs(days=365)
    count = AuditLog.objects.count()

    again = retention.cleanup_audit_logs(days=365)

    assert again.deleted == 0
    assert AuditLog.objects.count() == count + 1
    assert verify_audit_log().ok


class Interrupted(Exception):
    pass


def test_an_interrupted_cleanup_leaves_a_verifiable_trail_and_resumes():
    old = old_sealed_range(5)

    def stop_after_first_batch(deleted, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        retention.cleanup_audit_logs(days=365, batch_size=2, progress=stop_after_first_batch)

    assert AuditLog.objects.filter(id__lte=old.last_id).count() == 3
    assert verify_audit_log().ok
    assert retention.cleanup_audit_logs(days=365, batch_size=2).deleted == 3
    assert verify_audit_log().ok


def test_after_a_cleanup_deletes_are_refused_again():
    old_sealed_range(2)

    retention.cleanup_audit_logs(days=365)

    assert not RetentionGrant.objects.exists()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql("DELETE FROM audit_auditlog")


# The command


def test_the_cleanup_command_deletes_and_reports():
    old = old_sealed_range(3)
    out = io.StringIO()

    call_command("cleanup_audit_logs", "--days", "365", stdout=out)

    assert f"deleted {old.row_count} entries older than" in out.getvalue()
    assert not AuditLog.objects.filter(id__lte=old.last_id).exists()


def test_the_cleanup_command_reports_its_batches():
    old_sealed_range(5)
    out = io.StringIO()

    call_command("cleanup_audit_logs", "--days=365", "--batch-size=2", stdout=out)

    assert "deleted 2 of 5" in out.getvalue()
    assert "deleted 5 of 5" in out.getvalue()


def test_the_cleanup_command_dry_run_only_counts():
    old = old_sealed_range(3)
    count = AuditLog.objects.count()
    out = io.StringIO()

    call_command("cleanup_audit_logs", "--days=365", "--dry-run", stdout=out)

    assert f"would delete {old.row_count} entries" in out.getvalue()
    assert AuditLog.objects.count() == count + 1


def test_the_cleanup_command_refuses_below_the_minimum_with_a_clear_message(settings):
    settings.AUDIT_MIN_RETENTION_DAYS = 365
    old_sealed_range(2)
    count = AuditLog.objects.count()

    with pytest.raises(CommandError, match="at least 365 days; got 30") as refusal:
        call_command("cleanup_audit_logs", "--days=30", stdout=io.StringIO())

    assert refusal.value.returncode != 0
    assert AuditLog.objects.count() == count


def test_the_scheduled_cleanup_task_uses_the_configured_retention(settings):
    settings.AUDIT_RETENTION_DAYS = 380
    old = old_sealed_range(2)

    deleted = audit_tasks.cleanup_audit_logs.delay().get()

    assert deleted == old.row_count
    entry = AuditLog.objects.filter(action="admin.audit_cleanup").get()
    assert entry.metadata["days"] == 380


def test_entries_of_a_month_not_archived_are_kept_and_counted(monkeypatch):
    old_sealed_range(3)
    monkeypatch.setattr("audit.archive.archive_ended_months", lambda **kwargs: [])
    count = AuditLog.objects.count()

    result = retention.cleanup_audit_logs(days=365)

    assert (result.deleted, result.unarchived) == (0, count)
    assert AuditLog.objects.filter(created_at__lt=result.cutoff).count() == count


def test_a_dry_run_counts_what_a_run_archives_first():
    old_sealed_range(3)
    young_sealed_range(2)

    preview = retention.cleanup_audit_logs(days=365, dry_run=True)
    result = retention.cleanup_audit_logs(days=365)

    assert Archive.objects.count() == 1
    assert preview.deleted == result.deleted > 0
    assert preview.unarchived == result.unarchived == 0


def test_an_archive_changed_in_storage_stops_the_cleanup(settings):
    old_sealed_range(3)
    retention.cleanup_audit_logs(days=400 * 2)  # archives the month, deletes nothing
    done = Archive.objects.get()
    location = Path(settings.STORAGES["audit_archive"]["OPTIONS"]["location"])
    (location / f"{done.month:%Y-%m}" / "entries-0000.jsonl.gz").write_bytes(b"changed")
    count = AuditLog.objects.count()

    with pytest.raises(archive.ArchiveError, match="does not verify"):
        retention.cleanup_audit_logs(days=365)
    with pytest.raises(CommandError, match="does not verify"):
        call_command("cleanup_audit_logs", "--days=365", stdout=io.StringIO())

    assert AuditLog.objects.count() == count


def test_an_entry_written_into_an_archived_month_afterwards_is_kept():
    old = old_sealed_range(3)
    retention.cleanup_audit_logs(days=400 * 2)  # archives the month, deletes nothing
    done = Archive.objects.get()
    late = AuditLogFactory()
    age_entries(days=OLD, after_id=late.id - 1, through_id=late.id)  # a clock gone back
    services.seal_audit_log()

    result = retention.cleanup_audit_logs(days=365)

    assert AuditLog.objects.filter(id=late.id).exists()
    assert result.deleted == 3
    assert result.unarchived == 1
    assert done.last_id < late.id and old.last_id <= done.last_id


@pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")
def test_a_month_that_goes_whole_leaves_by_dropping_its_partition():
    month = months_ago(14)
    run_sql("SELECT audit_add_partitions(%s, %s)", params=[month, month])
    gone = entries_in(month, 3)
    young = AuditLogFactory()
    seal_all()
    mark = last_entry_id()
    out = io.StringIO()

    call_command("cleanup_audit_logs", "--days=365", stdout=out)

    assert f"  {month:%Y-%m} left whole: its partition was dropped" in out.getvalue()
    assert f"audit_auditlog_p{month:%Y_%m}" not in partitions_of()
    assert not AuditLog.objects.filter(id__in=gone).exists()
    assert AuditLog.objects.filter(id=young.id).exists()
    dropped = only_entry(mark, "audit.purged")
    assert dropped.metadata == {"month": f"{month:%Y-%m}", "deleted": 3, "dropped": True}
    assert dropped.description == f"3 audit entries of {month:%Y-%m} removed"
    assert verify_audit_log().ok


def test_a_month_with_a_held_entry_goes_by_rows_around_it():
    month = months_ago(14)
    if connection.vendor == "postgresql":
        run_sql("SELECT audit_add_partitions(%s, %s)", params=[month, month])
    ids = entries_in(month, 3)
    seal_all()
    held = AuditLog.objects.get(id=ids[1])
    holds.place_legal_hold(
        reason="case", resource_type=held.resource_type, resource_id=held.resource_id, via="api"
    )

    result = retention.cleanup_audit_logs(days=365)

    assert (result.deleted, result.held, result.dropped) == (2, 1, ())
    assert list(AuditLog.objects.filter(id__in=ids).values_list("id", flat=True)) == [ids[1]]
    assert verify_audit_log().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")
def test_a_drop_the_owner_refuses_leaves_the_month_to_batches():
    month = months_ago(14)
    run_sql("SELECT audit_add_partitions(%s, %s)", params=[month, month])
    entries_in(month, 2)
    seal_all()
    archive.archive_month(month)
    LegalHold.objects.create(reason="placed meanwhile", placed_by_email="x@example.com")

    assert retention._drop(month) is None

    assert f"audit_auditlog_p{month:%Y_%m}" in partitions_of()


def test_the_prefix_purges_entries_stay_they_say_how_far_it_went():
    mark = last_entry_id()
    legacy = services.log("audit.purged", metadata={"purged_through_id": 7, "deleted": 7})
    AuditLogFactory.create_batch(2)
    age_entries(days=OLD, after_id=mark)
    seal_all()

    result = retention.cleanup_audit_logs(days=365)

    assert result.deleted == 2
    assert AuditLog.objects.filter(id=legacy.id).exists()
