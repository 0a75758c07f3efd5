"""Verification month by month (audit/verification.py): archived months against their archives,
entries removed from the database checked against what could be removed, checkpoints over two
months, `--since`, a run resumed, and months checked in several processes.

Tampering is done as a database superuser would: with the append-only triggers lifted."""

import datetime
import io
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from audit import archive, archive_format, holds, roles, services, verification
from audit import tasks as audit_tasks
from audit.context import AuditContext
from audit.integrity import row_digest
from audit.models import AuditLog, Checkpoint, LegalHold, VerificationRun, VerifiedMonth
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import (
    entries_in,
    fetch,
    months_ago,
    run_sql,
    seal_all,
    triggers_lifted,
)
from audit.verification import verify_audit_log
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def delete(*ids: int) -> None:
    with triggers_lifted():
        run_sql(f"DELETE FROM audit_auditlog WHERE id IN ({','.join(map(str, ids))})")  # noqa: S608


def rewrite(entry_id: int, **values) -> None:
    """Change an entry and give it the digest of what it now says, as someone holding the HMAC
    key (not the archive's signing key) could."""
    row = AuditLog.objects.filter(id=entry_id).values(*verification.FIELDS).get()
    row.update(values)
    sets = ", ".join(f"{column} = %s" for column in [*values, "digest"])
    with triggers_lifted():
        run_sql(
            f"UPDATE audit_auditlog SET {sets} WHERE id = %s",  # noqa: S608
            params=[*values.values(), row_digest(row), entry_id],
        )


@pytest.fixture
def archived():
    """Three entries in a month two months ago, sealed and archived, and two this month."""
    ids = entries_in(months_ago(2), 3)
    AuditLogFactory.create_batch(2)
    seal_all()
    archive.archive_month(months_ago(2))
    return ids


def test_the_seal_cuts_its_ranges_at_months():
    older = entries_in(months_ago(1), 2)
    newer = [entry.id for entry in AuditLogFactory.create_batch(2)]

    seal_all()

    ranges = list(Checkpoint.objects.values_list("first_id", "last_id", "row_count"))
    assert ranges == [(older[0], older[-1], 2), (older[-1] + 1, newer[-1], 2)]


def test_an_archived_month_verifies_against_its_archive_month_by_month(archived):
    out = io.StringIO()

    call_command("verify_audit_log", stdout=out)

    month = f"{months_ago(2):%Y-%m}"
    assert f"  {month}: 3 entries" in out.getvalue()
    assert "audit trail OK" in out.getvalue()
    run = VerificationRun.objects.get()
    assert run.finished_at is not None
    assert {m.month: m.rows for m in run.months.all()}[months_ago(2)] == 3


def test_entries_removed_after_their_retention_verify_from_the_archive(archived, settings):
    settings.AUDIT_MIN_RETENTION_DAYS = 30  # the month ended more than 30 days ago
    delete(*archived)  # as the retention does: every entry of the month

    result = verify_audit_log()

    assert result.ok
    assert result.checked == AuditLog.objects.count() + 3


def test_an_archived_entry_removed_before_its_retention_ended_is_found(archived):
    delete(archived[1])  # AUDIT_MIN_RETENTION_DAYS is 365

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, archived[1])
    problems = VerifiedMonth.objects.get(month=months_ago(2)).problems
    assert problems == [f"id {archived[1]}: gone from the database before its retention ended"]


def test_an_archived_entry_a_hold_keeps_must_stay(archived, settings):
    settings.AUDIT_MIN_RETENTION_DAYS = 30
    entry = AuditLog.objects.get(id=archived[2])
    hold = holds.place_legal_hold(
        reason="Litigation",
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        via="api",
    )
    delete(*archived)
    assert verify_audit_log().ok  # placed after they could go: they may have gone before it

    with triggers_lifted():  # placed before the entries could go: they went while held
        LegalHold.objects.filter(pk=hold.pk).update(placed_at=entry.created_at)
    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, archived[2])


def test_an_entry_rewritten_with_the_hmac_key_differs_from_its_archive(archived):
    rewrite(archived[0], resource_id="999")

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, archived[0])
    assert VerifiedMonth.objects.get(month=months_ago(2)).problems[0] == (
        f"id {archived[0]}: not what its archive holds"
    )


def test_a_changed_archive_fails_its_month(archived, settings):
    name = f"{months_ago(2):%Y-%m}/entries-0000.jsonl.gz"
    store = archive.storage()
    path = store.path(name)
    with open(path, "r+b") as handle:
        handle.seek(20)
        byte = handle.read(1)
        handle.seek(20)
        handle.write(bytes([byte[0] ^ 1]))

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, archived[0])


def test_an_entry_removed_from_a_month_not_archived_is_found():
    ids = entries_in(months_ago(1), 4)
    seal_all()
    delete(ids[2])

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, ids[0])


def test_a_month_whose_entries_are_all_gone_without_an_archive_is_found():
    entries_in(months_ago(3), 2)
    gone = entries_in(months_ago(2), 2)
    entries_in(months_ago(1), 2)
    seal_all()
    delete(*gone)

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, gone[0])


def test_a_checkpoint_over_two_months_is_hashed_from_both(monkeypatch, settings):
    first = entries_in(months_ago(3), 2, day=28)
    second = entries_in(months_ago(2), 2)
    with monkeypatch.context() as before:  # as sealed before the seal cut ranges at months
        before.setattr(services, "_one_month", lambda rows: rows)
        seal_all()
    assert Checkpoint.objects.count() == 1
    archive.archive_month(months_ago(3))
    settings.AUDIT_MIN_RETENTION_DAYS = 30
    delete(*first)  # the seam's rows of the first month are in its archive only

    assert verify_audit_log().ok
    rewrite(second[1], resource_id="999")  # the seam's hash no longer matches
    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, first[0])  # the seam's first id
    delete(second[1])  # gone and not archived: the seam is short of a row
    assert verify_audit_log().first_bad_id == first[0]


def test_since_checks_the_recent_months_only():
    old = entries_in(months_ago(3), 2)
    entries_in(months_ago(1), 2)
    seal_all()
    with triggers_lifted():
        run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[old[0]])
    out = io.StringIO()

    call_command("verify_audit_log", "--since", f"{months_ago(1):%Y-%m}", stdout=out)

    assert "audit trail OK" in out.getvalue()
    assert f"entries from {months_ago(1):%Y-%m}" in out.getvalue()
    assert f"{months_ago(3):%Y-%m}:" not in out.getvalue()
    recorded = AuditLog.objects.filter(action="audit.verified").latest("id")
    assert recorded.metadata["since"] == months_ago(1).isoformat()
    with pytest.raises(CommandError, match=f"first bad id {old[0]}"):
        call_command("verify_audit_log", stdout=io.StringIO())


def test_a_run_interrupted_continues_with_the_months_it_has_not_checked():
    done = entries_in(months_ago(2), 2)
    later = entries_in(months_ago(1), 2)
    seal_all()
    run = VerificationRun.objects.create()
    verification.verify_month(run.pk, months_ago(2), verification._removable())  # then stopped
    rewrite(done[0], resource_id="999")  # after its month was checked: this run does not see it
    rewrite(later[0], resource_id="999")
    out = io.StringIO()

    with pytest.raises(CommandError, match=f"first bad id {later[0]}"):
        call_command("verify_audit_log", "--resume", stdout=out)

    assert f"{months_ago(2):%Y-%m}:" not in out.getvalue()
    assert f"{months_ago(1):%Y-%m}: 2 entries, FAILED at id {later[0]}" in out.getvalue()
    assert VerificationRun.objects.get().finished_at is not None
    assert verify_audit_log(resume=True).first_bad_id == done[0]  # a new run: nothing to resume


@pytest.mark.parametrize(
    "option", [["--jobs", "0"], ["--jobs", "x"], ["--since", "2026-13"], ["--since", "soon"]]
)
def test_the_command_names_a_bad_option(option):
    with pytest.raises(CommandError, match=r"jobs|since"):
        call_command("verify_audit_log", *option, stdout=io.StringIO())


def test_a_hold_matches_the_same_entries_in_python_as_in_the_database():
    users = UserFactory.create_batch(2)
    entries = [
        AuditLogFactory(context=AuditContext(user_id=users[0].pk)),
        AuditLogFactory(context=AuditContext(user_id=users[1].pk)),
        AuditLogFactory(target=("document", "7")),
        AuditLogFactory(action="user.login", context=AuditContext(user_id=users[1].pk)),
        AuditLogFactory(),
    ]
    # Between two stored times: SQLite compares times as text, of another precision.
    moment = entries[2].created_at - datetime.timedelta(microseconds=1)
    criteria = [
        {},
        {"user_id": users[0].pk},
        {"resource_type": "document"},
        {"resource_type": "document", "resource_id": "7"},
        {"category": "auth"},
        {"starts_at": moment},
        {"ends_at": moment},
        {"user_id": users[1].pk, "category": "auth", "ends_at": moment + datetime.timedelta(1)},
    ]
    for values in criteria:
        hold = LegalHold(reason="r", placed_by_email="s@example.com", **values)
        in_database = set(AuditLog.objects.filter(hold.entries()).values_list("id", flat=True))
        rows = AuditLog.objects.values("id", "created_at", *holds.CRITERIA[:4])
        assert {row["id"] for row in rows if hold.holds(row)} == in_database, values
        if connection.vendor == "postgresql":  # and in the owner's functions
            assert kept_by_sql(hold) == in_database, values


def kept_by_sql(hold: LegalHold) -> set[int]:
    """The entries roles.held_sql() finds kept while `hold` is the only one in force."""
    with transaction.atomic():
        hold.save()
        found = fetch(
            f"SELECT e.id FROM {AuditLog._meta.db_table} e"  # noqa: S608
            f" WHERE {roles.held_sql(LegalHold._meta.db_table)}"
        )
        transaction.set_rollback(True)
    return {entry_id for (entry_id,) in found}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite checks one at a time")
def test_months_are_checked_in_parallel_processes(monkeypatch, tmp_path):
    ids = {count: entries_in(months_ago(count), 2) for count in (3, 2, 1)}
    seal_all()
    rewrite(ids[2][1], resource_id="999")  # its checkpoint, from ids[2][0], no longer matches
    pids = tmp_path / "pids"
    check = verification.verify_month

    def recorded(*args):
        with pids.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return check(*args)

    monkeypatch.setattr(verification, "verify_month", recorded)

    result = verify_audit_log(jobs=2)

    assert (result.ok, result.first_bad_id, result.checked) == (False, ids[2][0], 6)
    workers = set(pids.read_text().split())
    assert 1 <= len(workers) <= 2 and str(os.getpid()) not in workers
    assert VerifiedMonth.objects.count() == 3
    assert AuditLogFactory().id  # this process's connection works again


def test_a_verification_is_one_run_with_a_month_each():
    entries_in(months_ago(1), 1)
    AuditLogFactory()
    seal_all()

    assert verify_audit_log().ok

    run = VerificationRun.objects.get()
    this_month = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
    assert list(run.months.values_list("month", flat=True)) == [months_ago(1), this_month]


def test_the_beat_checks_the_recent_months_hourly_and_the_whole_trail_weekly(settings):
    old = entries_in(months_ago(3), 2)
    entries_in(months_ago(1), 1)
    seal_all()
    with triggers_lifted():
        run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[old[0]])
    stale = VerificationRun.objects.create()
    VerificationRun.objects.filter(pk=stale.pk).update(
        started_at=timezone.now() - datetime.timedelta(days=31)
    )

    assert audit_tasks.verify_recent_audit_log.delay().get() is True
    assert audit_tasks.verify_audit_log.delay().get() is False

    assert list(VerificationRun.objects.values_list("since", flat=True)) == [None, months_ago(1)]
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["verify-audit-log"]["task"] == "audit.tasks.verify_recent_audit_log"
    assert schedule["verify-whole-audit-log"]["task"] == "audit.tasks.verify_audit_log"


def test_checkpoints_sealed_while_a_run_goes_on_are_no_alarm(monkeypatch):
    entries_in(months_ago(2), 2)
    entries_in(months_ago(1), 2)
    seal_all()
    check = verification.verify_month

    def and_new_entries_sealed(*args):
        checked = check(*args)
        AuditLogFactory.create_batch(2)
        seal_all()
        return checked

    monkeypatch.setattr(verification, "verify_month", and_new_entries_sealed)

    assert verify_audit_log().ok


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's key is the id alone")
def test_a_sealed_entry_copied_under_its_own_id_is_found():
    ids = entries_in(months_ago(1), 3)
    AuditLogFactory()
    seal_all()
    with triggers_lifted():  # the key is (id, created_at): another time, the same id
        run_sql(
            "CREATE TEMP TABLE copied AS SELECT * FROM audit_auditlog WHERE id = %s;"
            "UPDATE copied SET created_at = created_at + interval '1 second';"
            "INSERT INTO audit_auditlog OVERRIDING SYSTEM VALUE SELECT * FROM copied",
            params=[ids[2]],
        )

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, ids[0])  # its checkpoint's first
    assert f"id {ids[2]}: more than once" in VerifiedMonth.objects.get(month=months_ago(1)).problems


def test_since_finds_the_first_checkpoints_of_its_month_deleted():
    entries_in(months_ago(2), 2)
    first = entries_in(months_ago(1), 2)
    seal_all()
    entries_in(months_ago(1), 2)
    seal_all()
    delete(*first)  # the month's first checkpoint, whole: no row of it left

    result = verify_audit_log(since=months_ago(1))

    assert (result.ok, result.first_bad_id) == (False, first[0])


def test_an_archive_gone_from_its_storage_is_reported(archived):
    name = f"{months_ago(2):%Y-%m}/{archive_format.MANIFEST}"
    archive.storage().delete(name)

    result = verify_audit_log()

    assert (result.ok, result.first_bad_id) == (False, archived[0])
    assert "is gone" in VerifiedMonth.objects.get(month=months_ago(2)).problems[0]


def test_the_dashboard_keeps_a_failure_until_as_much_of_the_trail_verifies(settings):
    old = entries_in(months_ago(3), 2)
    seal_all()
    with triggers_lifted():
        run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[old[0]])

    assert not services.check_audit_log().ok
    assert services.check_audit_log(since=months_ago(1)).ok  # the recent months only

    assert services.last_verification().action == "audit.tamper_detected"


def test_the_verify_endpoint_checks_from_a_month_or_names_a_bad_one(staff_api):
    old = entries_in(months_ago(3), 2)
    seal_all()
    with triggers_lifted():
        run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[old[0]])

    recent = staff_api.get(f"/api/audit/verify/?since={months_ago(1):%Y-%m}")
    whole = staff_api.get("/api/audit/verify/")
    bad = staff_api.get("/api/audit/verify/?since=2026-13")

    assert recent.status_code == 200 and recent.json()["ok"] is True
    assert whole.json()["first_bad_id"] == old[0]
    assert bad.status_code == 400 and "since" in bad.json()


def test_an_entry_written_into_an_archived_month_later_is_checked_alone(archived):
    for _ in range(3):  # checkpoints in between, which the month has no row of
        AuditLogFactory.create_batch(2)
        seal_all()
    late = entries_in(months_ago(2), 1)  # a clock gone back
    seal_all()

    assert verify_audit_log().ok

    month = VerifiedMonth.objects.get(month=months_ago(2))
    assert (month.rows, month.seams) == (4, [])
    assert month.covered[-1] == [late[0], late[0]]


def test_entries_not_sealed_yet_cost_no_query_each(django_assert_max_num_queries):
    AuditLogFactory.create_batch(2)
    seal_all()
    AuditLogFactory.create_batch(30)  # after the chain's end

    with django_assert_max_num_queries(25):  # 18; a query a row would be 48
        assert verify_audit_log().ok


def test_a_whole_trail_failure_is_not_hidden_by_a_later_recent_one_that_passes():
    old = entries_in(months_ago(3), 2)
    entries_in(months_ago(1), 2)
    seal_all()
    with triggers_lifted():
        run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[old[0]])
    assert not services.check_audit_log().ok  # the weekly check, the whole trail
    whole_failure = AuditLog.objects.filter(action="audit.tamper_detected").latest("id")
    services.log(
        "audit.tamper_detected",
        metadata={"first_bad_id": 1, "checked": 1, "since": months_ago(1).isoformat()},
        success=False,
    )  # an hourly check that failed for a passing reason
    assert services.check_audit_log(since=months_ago(1)).ok  # and the next hourly one

    assert services.last_verification() == whole_failure


@pytest.mark.parametrize("since", ["0000-01", "9999-12", "2026-1", "2026-00"])
def test_the_verify_endpoint_refuses_a_month_out_of_range(staff_api, since):
    response = staff_api.get(f"/api/audit/verify/?since={since}")

    assert response.status_code == 400 and "since" in response.json()
