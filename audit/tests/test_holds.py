"""Legal holds (audit/holds.py): placed and released by staff through the API and the admin,
each audited with its reason; the retention cleanup never deletes what a hold keeps and says
what it kept."""

import datetime
import io

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from audit import retention, services
from audit.models import AdminAction, AuditLog, LegalHold
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import age_entries, last_entry_id, only_entry
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HOLDS = "/api/audit/holds/"
OLD = 400


@pytest.fixture
def holder(client_for):
    """A staff member allowed to place and release holds."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_legalhold", "change_legalhold"])
    )
    return client_for(user)


def test_staff_place_a_hold_and_it_is_audited(holder):
    mark = last_entry_id()

    response = holder.post(
        HOLDS,
        {"reason": "Litigation 2026-17", "user_id": 7, "category": "invoice",
         "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-07-01T00:00:00Z"},
        format="json",
    )  # fmt: skip

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["reason"], body["user"], body["category"]) == ("Litigation 2026-17", 7, "invoice")
    assert body["released_at"] is None and body["placed_by_email"]
    entry = only_entry(mark, "audit.hold_placed")
    assert entry.metadata["hold"] == body["id"]
    assert entry.metadata["criteria"] == {
        "user_id": 7,
        "category": "invoice",
        "starts_at": "2026-01-01T00:00:00Z",
        "ends_at": "2026-07-01T00:00:00Z",
    }
    assert AdminAction.objects.get(action="audit.hold_placed").kind == AdminAction.Kind.API
    assert holder.get(HOLDS).json()["results"][0]["id"] == body["id"]
    assert holder.get(f"{HOLDS}{body['id']}/").json()["reason"] == "Litigation 2026-17"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "x", "resource_id": "5"}, "resource_type"),
        ({"reason": "x", "category": "nonsense"}, "category"),
        (
            {"reason": "x", "starts_at": "2026-02-01T00:00Z", "ends_at": "2026-01-01T00:00Z"},
            "ends_at",
        ),
        ({"reason": "x", "user_id": 2**64}, "user_id"),
        ({"reason": "x", "starts_at": "yesterday"}, "starts_at"),
        ('{"reason": "\\ud800"}', "reason"),
        ({"reason": "x" * 2001}, "reason"),
    ],
)
def test_a_bad_hold_is_400_naming_the_field(holder, body, field):
    if isinstance(body, str):  # JSON text a client could not have encoded
        response = holder.post(HOLDS, body, content_type="application/json")
    else:
        response = holder.post(HOLDS, body, format="json")

    assert response.status_code == 400
    assert field in str(response.json())  # a field's errors, or the parse error naming it
    assert not LegalHold.objects.exists()


def test_holds_need_their_permissions(staff_api, client_for, anon_client):
    hold = LegalHold.objects.create(reason="r", placed_by_email="a@example.com")

    assert staff_api.get(HOLDS).status_code == 200
    assert staff_api.post(HOLDS, {"reason": "r"}, format="json").status_code == 403
    assert staff_api.post(f"{HOLDS}{hold.pk}/release/", {"reason": "r"}).status_code == 403
    assert client_for(UserFactory()).get(HOLDS).status_code == 403
    assert anon_client.get(HOLDS).status_code == 401


def test_a_hold_is_released_once_with_a_reason_and_it_is_audited(holder):
    hold_id = holder.post(HOLDS, {"reason": "case"}, format="json").json()["id"]
    mark = last_entry_id()

    released = holder.post(f"{HOLDS}{hold_id}/release/", {"reason": "case closed"}, format="json")
    again = holder.post(f"{HOLDS}{hold_id}/release/", {"reason": "twice"}, format="json")

    assert released.status_code == 200
    assert released.json()["release_reason"] == "case closed"
    assert released.json()["released_at"]
    assert again.status_code == 400
    assert only_entry(mark, "audit.hold_released").metadata["reason"] == "case closed"
    assert holder.post(f"{HOLDS}999999/release/", {"reason": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("criteria", "held"),
    [
        ({"user_id": "alice"}, ["a1", "a2"]),
        ({"resource_type": "invoice", "resource_id": "9"}, ["a2"]),
        ({"category": "auth"}, ["b1"]),
        ({"starts_at": "recent"}, ["a2", "b1"]),
        ({}, ["a1", "a2", "b1"]),
    ],
)
def test_a_hold_keeps_the_entries_matching_every_criterion(criteria, held):
    alice, bob = UserFactory(), UserFactory()
    entries = {
        "a1": AuditLogFactory(actor=alice, target=("invoice", 1)),
        "a2": AuditLogFactory(actor=alice, target=("invoice", 9)),
        "b1": AuditLogFactory(action="user.login", actor=bob, target=("user", bob.pk)),
    }
    age_entries(days=10, through_id=entries["a1"].id)
    values = {
        "user_id": alice.pk if criteria.get("user_id") else None,
        "resource_type": criteria.get("resource_type", ""),
        "resource_id": criteria.get("resource_id", ""),
        "category": criteria.get("category", ""),
        "starts_at": timezone.now() - datetime.timedelta(days=1)
        if "starts_at" in criteria
        else None,
    }
    hold = LegalHold.objects.create(reason="r", placed_by_email="x", **values)

    found = AuditLog.objects.filter(hold.entries(), id__in=[e.id for e in entries.values()])

    assert sorted(found.values_list("id", flat=True)) == sorted(entries[k].id for k in held)


def test_the_cleanup_keeps_held_entries_reports_them_and_deletes_them_once_released(holder):
    kept_user = UserFactory()
    AuditLogFactory.create_batch(2)
    age_entries(days=OLD)
    before_held = services.seal_audit_log()
    held = AuditLogFactory(actor=kept_user)
    AuditLogFactory.create_batch(2)
    age_entries(days=OLD, after_id=before_held.last_id)
    services.seal_audit_log()
    hold_id = holder.post(HOLDS, {"reason": "r", "user_id": kept_user.pk}, format="json").json()[
        "id"
    ]
    mark = last_entry_id()
    before = AuditLog.objects.filter(id__lte=before_held.last_id).count()

    result = retention.cleanup_audit_logs(days=365)

    # Only the held entry stays: entries go by id, whatever their neighbours.
    assert (result.deleted, result.held) == (before + 2, 1)
    assert AuditLog.objects.filter(id=held.id).exists()
    assert only_entry(mark, "audit.purge_held").metadata == {"kept": 1, "holds": [hold_id]}
    assert only_entry(mark, "admin.audit_cleanup").metadata["held"] == 1
    assert services.check_audit_log().ok

    holder.post(f"{HOLDS}{hold_id}/release/", {"reason": "done"}, format="json")
    again = retention.cleanup_audit_logs(days=365)

    assert (again.deleted, again.held) == (1, 0)
    assert not AuditLog.objects.filter(id=held.id).exists()
    assert services.check_audit_log().ok


def test_the_cleanup_command_and_the_api_say_what_holds_kept(holder, staff_api):
    AuditLogFactory.create_batch(2)
    age_entries(days=OLD)
    services.seal_audit_log()
    old = AuditLog.objects.count()
    holder.post(HOLDS, {"reason": "everything"}, format="json")
    out = io.StringIO()

    call_command("cleanup_audit_logs", "--days=365", "--dry-run", stdout=out)
    response = holder.delete("/api/audit/cleanup/?days=365&dry_run=true")

    assert f"kept {old} entries for legal holds" in out.getvalue()
    assert response.json()["held"] == old and response.json()["deleted"] == 0


def test_the_admin_places_and_releases_a_hold(admin):
    mark = last_entry_id()

    placed = admin.post(
        reverse("admin:audit_legalhold_add"),
        {"reason": "Audit by the tax office", "category": "auth", "resource_type": "user"},
    )
    hold = LegalHold.objects.get()
    page = admin.get(reverse("admin:audit_legalhold_change", args=[hold.pk])).content.decode()
    released = admin.post(
        reverse("admin:audit_legalhold_release", args=[hold.pk]), {"reason": "Over"}
    )

    assert placed.status_code == 302 and released.status_code == 302
    assert "Release this hold" in page
    hold.refresh_from_db()
    assert (hold.category, hold.release_reason) == ("auth", "Over")
    assert only_entry(mark, "audit.hold_placed").metadata["reason"] == "Audit by the tax office"
    assert only_entry(mark, "audit.hold_released")
    assert set(AdminAction.objects.values_list("kind", flat=True)) == {AdminAction.Kind.TOOL}


def test_the_admin_names_a_bad_hold_and_places_nothing(admin):
    response = admin.post(reverse("admin:audit_legalhold_add"), {"reason": "x", "resource_id": "1"})

    assert response.status_code == 200
    assert "A resource id needs its type." in response.content.decode()
    assert not LegalHold.objects.exists()
