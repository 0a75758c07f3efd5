"""Personal data sealed under a key per person, and the erasure that destroys it
(audit/subjects.py): the entries then read [erased] everywhere, and everything still verifies."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from audit import archive, archive_format, holds, services, subjects
from audit import context as audit_context
from audit.models import AdminAction, AuditLog, SubjectKey
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import age_entries, last_entry_id, only_entry, run_sql
from audit.verification import verify_audit_log
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ERASE = "/api/audit/subjects/{}/erase/"
BASIS = "GDPR art. 17 request #42"


def acted(user, **context) -> AuditLog:
    """An entry of the user's, from an address and a browser."""
    fields = {"user_id": user.pk, "user_email": user.email, "ip_address": "198.51.100.7"}
    return AuditLogFactory(context=request_context(**{**fields, **context}))


def stored(entry: AuditLog) -> dict:
    return AuditLog.objects.filter(pk=entry.pk).values().get()


@pytest.fixture
def grace(db):
    return UserFactory(email="grace@example.com")


def test_an_actors_email_address_and_browser_are_stored_sealed_and_read_in_plain(grace):
    entry = acted(grace, user_agent="Firefox/140")

    row = stored(entry)
    read = AuditLog.objects.get(pk=entry.pk)

    assert (row["user_email"], row["ip_address"], row["user_agent"]) == ("", None, "")
    assert row["sealed"].startswith("enc1.") and "grace" not in row["sealed"]
    assert "grace" not in row["description"] and "[erased]" in row["description"]
    assert row["email_hash"] == subjects.search_hash("Grace@Example.com")
    assert row["ip_hash"] == subjects.search_hash("198.51.100.7")
    assert (read.user_email, read.ip_address, read.user_agent) == (
        "grace@example.com",
        "198.51.100.7",
        "Firefox/140",
    )
    assert read.description == "grace@example.com updated invoice " + entry.resource_id
    assert verify_audit_log().ok


def test_an_entry_with_no_person_in_it_is_stored_as_it_reads():
    entry = AuditLogFactory(context=request_context())  # anonymous

    assert stored(entry)["ip_address"] == "203.0.113.10"
    assert stored(entry)["sealed"] == ""
    assert not SubjectKey.objects.exists()


def test_a_user_changed_by_staff_is_sealed_under_their_own_key(grace):
    staff = UserFactory(email="staff@example.com", is_staff=True)
    with audit_context.bind(request_context(user_id=staff.pk, user_email=staff.email)):
        grace.email = "grace.h@example.com"
        grace.save()
    entry = AuditLog.objects.filter(action="user.updated").get()
    row = stored(entry)

    assert row["resource_label"] == "" and row["metadata"] == {"changes": "[erased]"}
    assert len(row["sealed"].split()) == 2  # the staff member's part, and Grace's
    assert entry.resource_label == "grace.h@example.com"
    assert entry.metadata["changes"] == {"email": ["grace@example.com", "grace.h@example.com"]}

    subjects.erase_subject(grace.pk, basis=BASIS)
    entry = AuditLog.objects.get(pk=entry.pk)

    assert entry.user_email == "staff@example.com"  # the actor's part is not Grace's
    assert entry.resource_label == "[erased]"
    assert entry.metadata == {"changes": "[erased]"}
    assert entry.description == "staff@example.com changed user user [erased]"
    assert verify_audit_log().ok


def test_an_erased_persons_entries_read_erased_and_the_trail_still_verifies(grace):
    theirs = [acted(grace) for _ in range(3)]
    other = acted(UserFactory(email="ada@example.com"))
    services.seal_audit_log()
    mark = last_entry_id()

    erasure = subjects.erase_subject(grace.pk, basis=BASIS)

    for entry in AuditLog.objects.filter(pk__in=[e.pk for e in theirs]):
        assert (entry.user_email, entry.ip_address, entry.user_agent) == (
            "[erased]",
            None,
            "[erased]",
        )
        assert entry.description.startswith("[erased] updated invoice")
        assert entry.user_id == grace.pk  # an id, which names no one once the account goes
    assert AuditLog.objects.get(pk=other.pk).user_email == "ada@example.com"
    assert erasure == {"subject": grace.pk, "keys": 1, "unsealed": 0, "basis": BASIS}
    recorded = only_entry(mark, "audit.subject_erased")
    assert recorded.metadata == {"subject": grace.pk, "unsealed": 0, "basis": BASIS}
    assert (recorded.resource_type, recorded.resource_id) == ("subject", str(grace.pk))
    assert AuditLog.objects.filter(id__gt=mark).count() == 1
    key = SubjectKey.objects.get(subject=grace.pk)
    assert (key.wrapped, key.basis) == (None, BASIS) and key.erased_at is not None
    assert verify_audit_log().ok


def test_a_person_erased_who_acts_again_gets_a_new_key(grace):
    before = acted(grace)
    subjects.erase_subject(grace.pk, basis=BASIS)

    after = acted(grace)

    assert AuditLog.objects.get(pk=before.pk).user_email == "[erased]"
    assert AuditLog.objects.get(pk=after.pk).user_email == "grace@example.com"
    assert SubjectKey.objects.filter(subject=grace.pk).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_process_keeps_a_committed_key_and_forgets_it_when_erasing(django_assert_num_queries):
    if connection.vendor != "postgresql":
        pytest.skip("keys are kept on PostgreSQL only")
    grace = UserFactory(email="grace@example.com")
    acted(grace)  # makes her key
    acted(grace)  # reads it, made before: kept
    with django_assert_num_queries(1):  # the entry alone
        kept = acted(grace)

    subjects.erase_subject(grace.pk, basis=BASIS)
    after = acted(grace)

    assert AuditLog.objects.get(pk=kept.pk).user_email == "[erased]"
    assert AuditLog.objects.get(pk=after.pk).user_email == "grace@example.com"
    assert SubjectKey.objects.filter(subject=grace.pk, erased_at=None).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_key_made_in_a_transaction_rolled_back_is_not_kept():
    grace = UserFactory(email="grace@example.com")
    with pytest.raises(RuntimeError), transaction.atomic():
        acted(grace)  # makes her key
        acted(grace)  # and reads it: made in this transaction, not kept
        raise RuntimeError

    after = acted(grace)

    assert AuditLog.objects.get(pk=after.pk).user_email == "grace@example.com"


def test_the_erasure_counts_older_entries_that_hold_the_data_in_plain_text(grace, db_superuser):
    older = acted(grace)
    run_sql(
        "UPDATE audit_auditlog SET sealed = '', email_hash = '', ip_hash = '',"
        " user_email = %s WHERE id = %s",
        params=[grace.email, older.pk],
    )

    assert subjects.erase_subject(grace.pk, basis=BASIS)["unsealed"] == 1


@pytest.mark.parametrize(
    ("column", "tampered", "reads"),
    [
        ("sealed", lambda sealed: sealed.replace("enc1.", "enc1.9"), "[erased]"),
        ("sealed", lambda sealed: "enc1.x.!!! enc2.1.AAAA", "[erased]"),
        ("sealed", lambda sealed: "enc1.99999999999999999999.AAAA", "[erased]"),
        ("sealed", lambda sealed: sealed.rsplit(".", 1)[0] + ".AAAA", "[erased]"),  # too short
        ("email_hash", lambda hashed: hashed.upper(), "grace@example.com"),
        ("ip_hash", lambda hashed: "", "grace@example.com"),
    ],
)
def test_the_sealed_data_and_its_hashes_are_covered_by_the_digest(
    grace, db_superuser, column, tampered, reads
):
    entry = acted(grace)

    run_sql(
        f"UPDATE audit_auditlog SET {column} = %s WHERE id = %s",  # noqa: S608
        params=[tampered(stored(entry)[column]), entry.pk],
    )

    result = verify_audit_log()
    assert (result.ok, result.first_bad_id) == (False, entry.pk)
    assert AuditLog.objects.get(pk=entry.pk).user_email == reads  # read, never a 500


def test_a_sealed_entry_whose_metadata_was_rewritten_as_no_object_still_reads(grace, db_superuser):
    entry = acted(grace)

    run_sql("UPDATE audit_auditlog SET metadata = '[1]' WHERE id = %s", params=[entry.pk])

    read = AuditLog.objects.get(pk=entry.pk)
    assert (read.metadata, read.user_email) == ([1], "grace@example.com")


def test_an_anonymous_request_about_a_user_is_sealed_under_their_key(grace):
    entry = services.log(
        "user.password_reset_requested",
        target=grace,
        metadata={"requested_email": grace.email},
        context=request_context(),
    )
    row = stored(entry)

    assert (row["ip_address"], row["metadata"]) == (None, {"requested_email": "[erased]"})
    assert AuditLog.objects.get(pk=entry.pk).ip_address == "203.0.113.10"
    subjects.erase_subject(grace.pk, basis=BASIS)
    erased = AuditLog.objects.get(pk=entry.pk)
    assert (erased.ip_address, erased.user_agent, erased.metadata) == (
        None,
        "[erased]",
        {"requested_email": "[erased]"},
    )
    assert verify_audit_log().ok


# Legal holds


@pytest.mark.parametrize(
    "criteria",
    [
        lambda user: {"user_id": user.pk},
        lambda user: {"resource_type": "user", "resource_id": str(user.pk)},
        lambda user: {"category": "invoice"},
    ],
    ids=["their entries", "entries about them", "a category of their entries"],
)
def test_a_legal_hold_on_any_of_their_entries_refuses_the_erasure(grace, criteria):
    acted(grace)
    services.log("user.updated", target=grace, actor=grace)
    holds.place_legal_hold(reason="litigation", via=AdminAction.Kind.API, **criteria(grace))
    mark = last_entry_id()

    with pytest.raises(subjects.Held):
        subjects.erase_subject(grace.pk, basis=BASIS)

    assert SubjectKey.objects.get(subject=grace.pk).wrapped is not None
    assert last_entry_id() == mark


def test_a_hold_on_someone_else_does_not_refuse_it(grace):
    acted(grace)
    holds.place_legal_hold(reason="x", user_id=grace.pk + 1000, via=AdminAction.Kind.API)

    assert subjects.erase_subject(grace.pk, basis=BASIS)["keys"] == 1


# Reading and searching


def test_the_api_and_the_export_show_erased(grace, superuser, client_for):
    acted(grace)
    api = client_for(superuser)
    subjects.erase_subject(grace.pk, basis=BASIS)

    listed = api.get("/api/audit/logs/", {"user": grace.pk}).json()["results"]
    exported = api.get("/api/audit/logs/export/", {"format": "jsonl", "user": grace.pk})
    lines = [json.loads(line) for line in b"".join(exported.streaming_content).splitlines()]

    assert [(e["user_email"], e["ip_address"]) for e in listed] == [("[erased]", None)]
    assert [(e["user_email"], e["user_agent"]) for e in lines] == [("[erased]", "[erased]")]
    assert "sealed" not in lines[0]


def test_the_api_filters_sealed_entries_by_ip(grace, staff_api):
    entry = acted(grace, ip_address="2001:DB8::7")
    AuditLogFactory(context=request_context(ip_address="2001:db8::8"))

    listed = staff_api.get("/api/audit/logs/", {"ip": "2001:db8:0::7"}).json()["results"]

    assert [e["id"] for e in listed] == [entry.pk]


def test_the_admin_finds_a_live_person_by_email_and_not_once_erased(grace, admin):
    first = acted(grace)
    grace.email = "grace.h@example.com"  # an email she used before finds her entries too
    grace.save()
    changelist = "/admin/audit/auditlog/"

    by_old = admin.get(changelist, {"q": "grace@example.com"}).context["cl"].result_list
    by_start = admin.get(changelist, {"q": "GRACE.H"}).context["cl"].result_list
    subjects.erase_subject(grace.pk, basis=BASIS)
    erased = admin.get(changelist, {"q": "grace@example.com"})

    assert first.pk in [e.pk for e in by_old]
    assert first.pk in [e.pk for e in by_start]
    assert erased.context["cl"].result_list.count() == 0
    page = admin.get(f"{changelist}{first.pk}/change/").content.decode()
    assert "[erased]" in page and "grace@" not in page


# Archives


def test_an_archived_month_of_an_erased_person_verifies_offline_and_with_the_trail(grace, settings):
    acted(grace)
    acted(UserFactory())
    age_entries(days=400)
    services.seal_audit_log()
    (done,) = archive.archive_ended_months()

    subjects.erase_subject(grace.pk, basis=BASIS)

    folder = Path(settings.STORAGES["audit_archive"]["OPTIONS"]["location"])
    public_key = archive_format.public_key_text(archive.signing_key())
    report = archive_format.verify_archive(
        archive_format.Folder(folder), archive_format.public_key(public_key)
    )
    assert report.ok, report.problems
    archive.verify_stored(done)
    assert verify_audit_log().ok


def test_a_month_archived_before_the_sealing_columns_still_verifies(monkeypatch):
    AuditLogFactory.create_batch(2)
    age_entries(days=400)
    services.seal_audit_log()
    older = tuple(c for c in archive.COLUMNS_BUT_METADATA if c not in subjects.STORED_ONLY)
    with monkeypatch.context() as patched:  # lines as the archive wrote them before
        patched.setattr(archive, "COLUMNS_BUT_METADATA", older)
        assert len(archive.archive_ended_months()) == 1

    assert verify_audit_log().ok


# The command and the staff API


def test_the_command_erases_and_says_what_it_could_not(grace):
    acted(grace)
    out = io.StringIO()

    call_command("erase_subject", "--user", str(grace.pk), "--basis", BASIS, stdout=out)

    assert "keys destroyed: 1" in out.getvalue()
    assert AuditLog.objects.get(action="invoice.updated").user_email == "[erased]"
    assert AuditLog.objects.filter(action="audit.subject_erased").count() == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--user", "1", "--basis", "  "], "basis"),
        (["--user", "0", "--basis", BASIS], "--user"),
        (["--user", "x", "--basis", BASIS], "--user"),
        (["--basis", BASIS], "--user"),
    ],
)
def test_the_command_names_a_bad_argument(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("erase_subject", *arguments, stderr=io.StringIO())


def test_the_command_refuses_while_a_hold_keeps_them(grace):
    acted(grace)
    holds.place_legal_hold(reason="litigation", user_id=grace.pk, via=AdminAction.Kind.API)

    with pytest.raises(CommandError, match="legal hold"):
        call_command("erase_subject", "--user", str(grace.pk), "--basis", BASIS)


def test_the_staff_api_erases_with_the_permission(grace, superuser, client_for):
    acted(grace)
    mark = last_entry_id()

    answer = client_for(superuser).post(ERASE.format(grace.pk), {"basis": BASIS}, format="json")

    assert answer.status_code == 200, answer.content
    assert answer.json() == {"subject": grace.pk, "keys": 1, "unsealed": 0, "basis": BASIS}
    assert only_entry(mark, "audit.subject_erased").origin == "api"
    assert AdminAction.objects.get(action="audit.subject_erased").kind == "api"


def test_staff_without_the_permission_are_refused(grace, staff_api):
    acted(grace)

    answer = staff_api.post(ERASE.format(grace.pk), {"basis": BASIS}, format="json")

    assert answer.status_code == 403
    assert SubjectKey.objects.get(subject=grace.pk).wrapped is not None


def test_the_staff_api_answers_409_while_a_hold_keeps_them(grace, superuser, client_for):
    acted(grace)
    holds.place_legal_hold(reason="litigation", user_id=grace.pk, via=AdminAction.Kind.API)

    answer = client_for(superuser).post(ERASE.format(grace.pk), {"basis": BASIS}, format="json")

    assert answer.status_code == 409
    assert "legal hold" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "basis"),
        ({"basis": " "}, "basis"),
        ({"basis": "x" * 2001}, "basis"),
        ({"basis": ["a"]}, "basis"),
        ('{"basis": "\\ud800"}', "basis"),
    ],
    ids=["missing", "blank", "too long", "not text", "lone surrogate"],
)
def test_the_staff_api_names_a_bad_basis(grace, superuser, client_for, body, field):
    api = client_for(superuser)
    if isinstance(body, str):
        answer = api.post(ERASE.format(grace.pk), body, content_type="application/json")
    else:
        answer = api.post(ERASE.format(grace.pk), body, format="json")

    assert answer.status_code == 400, answer.content
    assert field in json.dumps(answer.json())


def test_the_staff_api_takes_only_post(superuser, client_for):
    api = client_for(superuser)

    assert api.get(ERASE.format(1)).status_code == 405
    assert api.post(ERASE.format("99999999999999999999"), {"basis": BASIS}).status_code == 404


def test_a_copy_of_the_database_without_the_hmac_key_reads_no_one(grace, settings):
    entry = acted(grace)

    settings.AUDIT_HMAC_KEY = "not the trail's key"

    assert AuditLog.objects.get(pk=entry.pk).user_email == "[erased]"
