"""Tamper evidence: row digests, checkpoints chained by the seal, and their verification by
`verify_audit_log()`, `manage.py verify_audit_log` and GET /api/audit/verify/.

Tampering is done as a database superuser would: with the append-only triggers dropped."""

import hashlib
import io
from contextlib import contextmanager

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.forms.models import model_to_dict

from audit import integrity, services
from audit import tasks as audit_tasks
from audit.models import AuditLog, Checkpoint
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import db_value, last_entry_id, only_entry, run_sql
from audit.verification import Verification, verify_audit_log
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db

VERIFY = "/api/audit/verify/"


def sealed_entries(count: int) -> tuple[list[AuditLog], Checkpoint]:
    entries = AuditLogFactory.create_batch(count)
    checkpoint = services.seal_audit_log()
    assert checkpoint is not None
    return entries, checkpoint


def copy_of(entry: AuditLog, **changes) -> AuditLog:
    """A new row saying what `entry` says, with its digest: a replay."""
    fields = model_to_dict(entry, exclude=["id", "user", "created_at"])
    return AuditLog.objects.create(**{**fields, "user_id": entry.user_id, **changes})


@contextmanager
def with_key(settings, key: str):
    """Sign with another HMAC key for a while, as someone without the real one would."""
    real = settings.AUDIT_HMAC_KEY
    settings.AUDIT_HMAC_KEY = key
    try:
        yield
    finally:
        settings.AUDIT_HMAC_KEY = real


def assert_broken_at(first_bad_id: int):
    result = verify_audit_log()
    assert (result.ok, result.first_bad_id) == (False, first_bad_id)


# Sealing


def test_a_row_digest_covers_what_the_row_says():
    entry = AuditLogFactory(metadata={"amount": "10.00"})

    values = {field: getattr(entry, field) for field in integrity.DIGEST_FIELDS}

    assert integrity.row_digest(values) == entry.digest
    assert integrity.row_digest({**values, "metadata": {"amount": "99.00"}}) != entry.digest


def test_sealing_covers_every_settled_row():
    entries = AuditLogFactory.create_batch(3)
    first_id = AuditLog.objects.order_by("id").first().id

    checkpoint = services.seal_audit_log()

    assert (checkpoint.first_id, checkpoint.last_id) == (first_id, entries[-1].id)
    assert checkpoint.row_count == AuditLog.objects.count()
    assert checkpoint.previous_digest == integrity.GENESIS


def test_the_next_seal_chains_to_the_previous_checkpoint():
    _, first = sealed_entries(2)
    later = AuditLogFactory.create_batch(2)

    second = services.seal_audit_log()

    assert (second.first_id, second.last_id, second.row_count) == (
        first.last_id + 1,
        later[-1].id,
        2,
    )
    assert second.previous_digest == first.digest


def test_sealing_with_nothing_new_writes_no_checkpoint():
    sealed_entries(2)

    assert services.seal_audit_log() is None
    assert Checkpoint.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_seal_never_seals_over_an_entry_of_a_transaction_still_writing():
    """An open transaction may hold a lower id than entries already committed: sealing those
    would leave its entry outside every checkpoint once it commits (a false tamper alarm)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: no transaction is open while sealing")
    with psycopg.connect(**connection.get_connection_params()) as writer:
        early = services.entry_values("invoice.sent", target=("invoice", 1))
        row = services.stored([early])[0]
        writer.execute(f"{services.INSERT_SQL} RETURNING id", services.insert_params(row))
        later = services.log("invoice.sent", target=("invoice", 2))  # committed first

        assert services.seal_audit_log() is None  # the round gives up, and seals nothing
        writer.commit()

    checkpoint = services.seal_audit_log()
    assert (checkpoint.row_count, checkpoint.last_id) == (2, later.id)
    assert verify_audit_log().ok


def test_a_large_backlog_is_sealed_in_several_checkpoints():
    AuditLogFactory.create_batch(5)

    checkpoints = [services.seal_audit_log(max_rows=2) for _ in range(3)]

    assert [c.row_count for c in checkpoints] == [2, 2, AuditLog.objects.count() - 4]
    assert services.seal_audit_log(max_rows=2) is None
    assert verify_audit_log().ok


def test_the_seal_command_seals_and_reports():
    AuditLogFactory.create_batch(3)
    out = io.StringIO()

    call_command("seal_audit_log", stdout=out)

    checkpoint = Checkpoint.objects.get()
    assert f"sealed #{checkpoint.first_id}..#{checkpoint.last_id}" in out.getvalue()
    assert f"sealed {checkpoint.row_count} entries" in out.getvalue()


def test_the_seal_task_seals_everything_settled():
    AuditLogFactory.create_batch(3)

    sealed = audit_tasks.seal_audit_log.delay().get()

    assert sealed == AuditLog.objects.count()
    assert Checkpoint.objects.get().row_count == sealed


# Verification of an untouched trail


def test_an_untouched_trail_verifies():
    sealed_entries(3)
    sealed_entries(2)
    AuditLogFactory.create_batch(2)  # not sealed yet

    result = verify_audit_log()

    assert result == Verification(ok=True, checked=AuditLog.objects.count(), first_bad_id=None)


def test_an_empty_trail_verifies():
    assert verify_audit_log() == Verification(ok=True, checked=0, first_bad_id=None)


def test_the_verify_command_reports_an_intact_trail():
    sealed_entries(3)
    out = io.StringIO()
    count = AuditLog.objects.count()

    call_command("verify_audit_log", stdout=out)

    assert f"audit trail OK: {count} entries" in out.getvalue()


def test_the_verify_endpoint_reports_an_intact_trail(staff_api):
    sealed_entries(3)
    count = AuditLog.objects.count()

    response = staff_api.get(VERIFY)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "checked": count, "first_bad_id": None}


# Tampering


def test_a_modified_unsealed_row_is_detected(db_superuser):
    entries = AuditLogFactory.create_batch(3)

    run_sql("UPDATE audit_auditlog SET success = %s WHERE id = %s", params=[False, entries[1].id])

    assert_broken_at(entries[1].id)


def test_a_modified_sealed_row_is_detected_at_that_row(db_superuser):
    """Its digest names the row: the rows sealed before it in its range are intact."""
    entries, _ = sealed_entries(4)

    run_sql(
        "UPDATE audit_auditlog SET user_email = %s WHERE id = %s",
        params=["someone-else@example.com", entries[2].id],
    )

    assert_broken_at(entries[2].id)


def test_a_modified_sealed_row_time_is_detected(db_superuser):
    entries, checkpoint = sealed_entries(3)
    sealed_entries(2)
    earlier = AuditLog.objects.get(pk=entries[0].id).created_at.replace(year=2020)

    run_sql(
        "UPDATE audit_auditlog SET created_at = %s WHERE id = %s",
        params=[db_value(earlier), entries[1].id],
    )

    assert_broken_at(checkpoint.first_id)


def test_a_deleted_sealed_row_is_detected(db_superuser):
    entries, checkpoint = sealed_entries(4)
    sealed_entries(2)
    AuditLogFactory()  # not sealed yet

    run_sql("DELETE FROM audit_auditlog WHERE id = %s", params=[entries[2].id])

    result = verify_audit_log()
    assert not result.ok
    assert checkpoint.first_id <= result.first_bad_id <= entries[2].id


def test_the_deleted_tail_of_the_last_sealed_range_is_detected(db_superuser):
    entries, checkpoint = sealed_entries(3)

    run_sql("DELETE FROM audit_auditlog WHERE id >= %s", params=[entries[1].id])

    result = verify_audit_log()
    assert not result.ok
    assert checkpoint.first_id <= result.first_bad_id <= entries[1].id


def test_a_whole_deleted_sealed_range_is_detected(db_superuser):
    sealed_entries(2)
    _, second = sealed_entries(2)
    sealed_entries(2)

    run_sql(
        "DELETE FROM audit_auditlog WHERE id BETWEEN %s AND %s",
        params=[second.first_id, second.last_id],
    )

    assert_broken_at(second.first_id)


def test_an_inserted_forged_row_is_detected():
    AuditLogFactory.create_batch(2)

    forged = AuditLog.objects.create(
        action="invoice.paid", category="invoice", resource_type="invoice", resource_id="7",
        digest="f" * 64,
    )  # fmt: skip

    assert_broken_at(forged.id)


def test_a_forged_row_signed_with_a_guessed_key_is_detected(settings):
    AuditLogFactory()
    with with_key(settings, "guessed"):
        forged = AuditLogFactory(action="invoice.paid")

    assert_broken_at(forged.id)


def test_a_replayed_row_slipped_into_a_sealed_range_is_detected(db_superuser):
    entries = AuditLogFactory.create_batch(4)
    run_sql("DELETE FROM audit_auditlog WHERE id = %s", params=[entries[2].id])
    checkpoint = services.seal_audit_log()
    AuditLogFactory()
    assert verify_audit_log().ok

    copy_of(entries[1], id=entries[2].id)  # a valid digest: it does not cover the id

    assert_broken_at(checkpoint.first_id)


def test_a_modified_checkpoint_is_detected(db_superuser):
    sealed_entries(2)
    _, second = sealed_entries(2)

    run_sql(
        "UPDATE audit_checkpoint SET row_count = row_count + 1 WHERE id = %s", params=[second.id]
    )

    assert_broken_at(second.first_id)


def test_a_checkpoint_removed_from_the_chain_is_detected(db_superuser):
    sealed_entries(2)
    _, second = sealed_entries(2)
    _, third = sealed_entries(2)

    run_sql("DELETE FROM audit_checkpoint WHERE id = %s", params=[second.id])

    assert_broken_at(third.first_id)


def test_a_chain_resealed_without_the_key_is_detected(db_superuser, settings):
    """Someone deletes a sealed row, drops the checkpoints and seals again: without the HMAC
    key the new chain does not verify."""
    entries, checkpoint = sealed_entries(3)
    run_sql("DELETE FROM audit_auditlog WHERE id = %s", params=[entries[1].id])
    run_sql("DELETE FROM audit_checkpoint")
    with with_key(settings, "guessed"):
        resealed = services.seal_audit_log()

    assert resealed.first_id == checkpoint.first_id
    assert_broken_at(checkpoint.first_id)


def test_a_forged_checkpoint_appended_to_the_chain_is_detected():
    _, last = sealed_entries(2)
    later = AuditLogFactory()

    forged = Checkpoint.objects.create(
        first_id=last.last_id + 1, last_id=later.id, row_count=1, rows_hash="0" * 64,
        previous_digest=last.digest, digest="0" * 64,
    )  # fmt: skip

    assert_broken_at(forged.first_id)


def test_the_verify_command_fails_naming_the_first_bad_id(db_superuser):
    entries = AuditLogFactory.create_batch(3)
    run_sql("UPDATE audit_auditlog SET action = 'user.login' WHERE id = %s", params=[entries[1].id])

    with pytest.raises(CommandError, match=f"first bad id {entries[1].id}") as failure:
        call_command("verify_audit_log", stdout=io.StringIO())

    assert failure.value.returncode != 0


def test_the_verify_endpoint_reports_the_first_bad_id(db_superuser, staff_api):
    entries = AuditLogFactory.create_batch(3)
    run_sql("UPDATE audit_auditlog SET resource_id = '999' WHERE id = %s", params=[entries[0].id])

    before = AuditLog.objects.count()  # every entry is checked, not only those up to the bad one

    response = staff_api.get(VERIFY)

    assert response.status_code == 200
    assert response.json() == {"ok": False, "checked": before, "first_bad_id": entries[0].id}


def test_a_failed_verification_is_recorded_as_a_tamper_alarm(db_superuser, staff_api):
    entries = AuditLogFactory.create_batch(2)
    run_sql("UPDATE audit_auditlog SET success = %s WHERE id = %s", params=[False, entries[0].id])

    result = services.check_audit_log()

    alarm = AuditLog.objects.get(action="audit.tamper_detected")
    assert (result.ok, alarm.success) == (False, False)
    assert alarm.metadata["first_bad_id"] == entries[0].id
    listed = staff_api.get("/api/audit/security-events/").json()["results"]
    assert alarm.id in [entry["id"] for entry in listed]


def test_an_intact_trail_raises_no_alarm_and_its_verification_is_recorded():
    sealed_entries(2)
    mark = last_entry_id()

    result = services.check_audit_log()

    assert result.ok
    assert not AuditLog.objects.filter(action="audit.tamper_detected").exists()
    recorded = only_entry(mark, "audit.verified")
    assert recorded.metadata == {"checked": result.checked}
    assert services.last_verification() == recorded


# The origin column


def test_an_entrys_origin_is_covered_by_its_digest(db_superuser):
    entry = AuditLogFactory(context=request_context(origin="admin"))

    run_sql("UPDATE audit_auditlog SET origin = 'api' WHERE id = %s", params=[entry.id])

    assert_broken_at(entry.id)


def test_an_entry_written_before_the_origin_column_still_verifies(db_superuser):
    """Older entries hold "" and were digested without it; blanking a newer one's is caught."""
    values = services.entry_values("user.login", target=("user", 1))
    legacy = {**values, "origin": ""}
    legacy["digest"] = integrity.row_digest(legacy)
    old = services.insert_entry(legacy)
    new = AuditLogFactory(context=request_context(origin="admin"))

    assert verify_audit_log().ok

    run_sql("UPDATE audit_auditlog SET origin = '' WHERE id = %s", params=[new.id])
    assert_broken_at(new.id)
    assert old.id < new.id


# The resource's label


def test_an_entrys_resource_label_is_covered_by_its_digest(db_superuser):
    entry = services.log("user.updated", target=UserFactory(email="grace@example.com"))

    run_sql("UPDATE audit_auditlog SET resource_label = 'ada' WHERE id = %s", params=[entry.id])

    assert_broken_at(entry.id)


def test_an_entry_written_before_the_label_column_still_verifies(db_superuser):
    """Older entries hold "" and were digested without it; blanking a newer one's is caught."""
    values = services.entry_values("user.login", target=("user", 1))
    old = services.insert_entry(values)
    invoice = InvoiceFactory()
    new = services.log("invoice.updated", target=invoice)
    assert (old.resource_label, new.resource_label) == ("", invoice.number)

    assert verify_audit_log().ok

    run_sql("UPDATE audit_auditlog SET resource_label = '' WHERE id = %s", params=[new.id])
    assert_broken_at(new.id)


def test_a_label_is_not_read_as_an_origin():
    """A blank origin and a label digest as a different list than an origin without a label."""
    values = services.entry_values("user.login", target=("user", 1))

    as_origin = integrity.row_digest({**values, "origin": "admin", "resource_label": ""})
    as_label = integrity.row_digest({**values, "origin": "", "resource_label": "admin"})

    assert as_origin != as_label


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the owner's function")
def test_the_owners_function_refuses_a_link_over_no_entries():
    """Ids that hold no entry (an insert rolled back): a link over them has no times to record."""
    _, first = sealed_entries(2)
    with pytest.raises(RuntimeError), transaction.atomic():
        AuditLogFactory()  # its id is used up
        raise RuntimeError
    AuditLogFactory()
    values = {
        "previous_digest": first.digest,
        "first_id": first.last_id + 1,
        "last_id": first.last_id + 1,
        "row_count": 0,
        "rows_hash": "",
    }
    arguments = [values[field] for field in services.roles.CHECKPOINT_FIELDS]
    with pytest.raises(DatabaseError) as refused, connection.cursor() as cursor:
        cursor.execute(
            "SELECT audit_add_checkpoint(%s, %s, %s, %s, %s, %s)",
            [*arguments, integrity.checkpoint_digest(**values)],
        )
    assert refused.value.__cause__.sqlstate == services.roles.NOT_NEXT


def test_a_checkpoint_whose_times_were_blanked_is_reported(db_superuser):
    sealed_entries(2)
    _, second = sealed_entries(2)

    run_sql("UPDATE audit_checkpoint SET oldest_at = NULL WHERE id = %s", params=[second.id])

    assert_broken_at(second.first_id)


# The canonical form, pinned: a change to it (key order, separators, escapes, the genesis
# value), made in the writer and the verifier together, passes every other test and breaks every
# entry already stored once deployed.

GOLDEN_KEY = "golden-key"
GOLDEN_ENTRY = {
    "action": "invoice.paid", "category": "invoice",
    "description": "Zoë paid invoice INV-2026-001: 1 250,00 €",
    "user_id": None, "user_email": "", "resource_type": "invoice", "resource_id": "7",
    "ip_address": None, "user_agent": "", "method": "POST",
    "path": "/api/invoices/7/payments/", "request_id": "req-1",
    # Keys out of order, at two depths, and text beyond ASCII.
    "metadata": {
        "zeta": "ünï", "alpha": [2, 1], "amount": "1250.00", "nested": {"b": True, "a": None},
    },
    "success": True, "origin": "api", "resource_label": "INV-2026-001",
    "sealed": "", "email_hash": "", "ip_hash": "",
}  # fmt: skip
GOLDEN_CANONICAL = (
    '["invoice.paid","invoice","Zo\\u00eb paid invoice INV-2026-001: 1 250,00 \\u20ac",null,"",'
    '"invoice","7",null,"","POST","/api/invoices/7/payments/","req-1",{"alpha":[2,1],'
    '"amount":"1250.00","nested":{"a":null,"b":true},"zeta":"\\u00fcn\\u00ef"},true,"api",'
    '"INV-2026-001"]'
)
GOLDEN_DIGEST = "67c1996b5c5330b370b7e1ee63b1fb550321ebccc15eb16ba1b1c92d480da77b"
GOLDEN_CHECKPOINT = "b6eeeb8db597802b7fcadf7b23e24aa98a4d499363dc99aa04560908cb326a52"


def test_the_canonical_form_of_an_entry_is_pinned(settings):
    settings.AUDIT_HMAC_KEY = GOLDEN_KEY
    fields = integrity._digested_fields(GOLDEN_ENTRY)

    assert integrity._CANONICAL.encode([GOLDEN_ENTRY[f] for f in fields]) == GOLDEN_CANONICAL
    assert integrity.row_digest(GOLDEN_ENTRY) == GOLDEN_DIGEST


def test_the_checkpoint_digest_and_the_chain_start_are_pinned(settings):
    settings.AUDIT_HMAC_KEY = GOLDEN_KEY

    assert integrity.GENESIS == "0" * 64
    digest = integrity.checkpoint_digest(
        previous_digest=integrity.GENESIS, first_id=1, last_id=3, row_count=3, rows_hash="ab" * 32
    )
    assert digest == GOLDEN_CHECKPOINT
    assert integrity.row_text(7, "2026-01-31T09:00:00.250000+00:00", "d" * 64) == (
        f"7|2026-01-31T09:00:00.250000+00:00|{'d' * 64}\n"
    )


def test_an_entry_stored_and_read_back_has_the_pinned_digest(settings):
    """Through the database (PostgreSQL's jsonb reorders an object's keys, SQLite keeps its
    text): what is stored, and what reads back, digest as the golden entry does."""
    settings.AUDIT_HMAC_KEY = GOLDEN_KEY

    entry = services.insert_entry(dict(GOLDEN_ENTRY))

    stored = AuditLog.objects.values(*integrity.DIGEST_FIELDS, "digest").get(pk=entry.pk)
    assert stored["digest"] == GOLDEN_DIGEST
    assert integrity.row_digest(stored) == GOLDEN_DIGEST
    assert verify_audit_log().ok


def test_a_checkpoint_recounted_and_rehashed_over_a_deleted_row_is_detected(db_superuser):
    """A row count and a SHA-256 of the rows anyone can recompute after deleting a row: the
    checkpoint's HMAC over them is what no one without the key can."""
    entries, checkpoint = sealed_entries(4)
    run_sql("DELETE FROM audit_auditlog WHERE id = %s", params=[entries[1].id])
    kept = AuditLog.objects.filter(id__range=(checkpoint.first_id, checkpoint.last_id))
    hasher = hashlib.sha256()
    for row in kept.order_by("id").values_list("id", "created_at", "digest"):
        hasher.update(integrity.row_line(*row))

    run_sql(
        "UPDATE audit_checkpoint SET row_count = %s, rows_hash = %s WHERE id = %s",
        params=[kept.count(), hasher.hexdigest(), checkpoint.id],
    )

    assert_broken_at(checkpoint.first_id)
