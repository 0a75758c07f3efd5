"""The staff API over the trail: /api/audit/ (API.md, "Audit")."""

import datetime

import pytest
from django.utils import timezone

from audit import context as audit_context
from audit import services
from audit.models import AdminAction, Archive, AuditLog
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import age_entries, last_entry_id, only_entry
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGS = "/api/audit/logs/"
ENTRY_FIELDS = {
    "id", "action", "category", "description", "user", "user_email", "resource_type",
    "resource_id", "ip_address", "user_agent", "method", "path", "metadata", "success",
    "origin", "created_at",
}  # fmt: skip
READ_ENDPOINTS = [
    "/api/audit/logs/",
    "/api/audit/logs/export/",
    "/api/audit/admin-actions/",
    "/api/audit/security-events/",
    "/api/audit/user/1/logs/",
    "/api/audit/resource/invoice/1/logs/",
    "/api/audit/verify/",
]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [entry["id"] for entry in response.json()["results"]]


def all_ids_newest_first(**filters) -> list[int]:
    return list(AuditLog.objects.filter(**filters).order_by("-id").values_list("id", flat=True))


# Who may


@pytest.mark.parametrize("path", [*READ_ENDPOINTS, "/api/audit/cleanup/"])
def test_anonymous_callers_get_401(anon_client, path):
    method = anon_client.delete if "cleanup" in path else anon_client.get

    assert method(path).status_code == 401


@pytest.mark.parametrize("path", [*READ_ENDPOINTS, "/api/audit/cleanup/?days=400"])
def test_signed_in_non_staff_users_get_403(api, path):
    method = api.delete if "cleanup" in path else api.get

    assert method(path).status_code == 403


@pytest.mark.parametrize("path", [p.rstrip("/") for p in READ_ENDPOINTS])
def test_every_endpoint_answers_without_its_trailing_slash(staff_api, path):
    assert staff_api.get(path).status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_logs_are_read_only(staff_api, method):
    entry = AuditLogFactory()

    response = getattr(staff_api, method)(LOGS, {"action": "user.login"})

    assert response.status_code == 405
    assert AuditLog.objects.filter(pk=entry.pk, action=entry.action).exists()


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_entry_has_no_writable_url(staff_api, method):
    entry = AuditLogFactory()

    response = getattr(staff_api, method)(f"{LOGS}{entry.pk}/", {"action": "user.login"})

    assert response.status_code in (404, 405)
    assert AuditLog.objects.get(pk=entry.pk).action == entry.action


# The list


def test_logs_are_a_cursor_page_newest_first(staff_api):
    AuditLogFactory.create_batch(3)

    response = staff_api.get(LOGS)

    assert set(response.json()) == {"next", "previous", "results"}
    assert ids(response) == all_ids_newest_first()


def test_an_entry_has_exactly_the_contract_fields(staff_api, user):
    entry = AuditLogFactory(
        action="invoice.sent",
        target=("invoice", 42),
        metadata={"to": "client@example.com"},
        context=request_context(user_id=user.pk, user_email=user.email),
    )

    result = next(e for e in staff_api.get(LOGS).json()["results"] if e["id"] == entry.id)

    assert set(result) == ENTRY_FIELDS
    assert result["action"] == "invoice.sent"
    assert result["category"] == "invoice"
    assert result["user"] == user.pk
    assert result["user_email"] == user.email
    assert (result["resource_type"], result["resource_id"]) == ("invoice", "42")
    assert (result["ip_address"], result["method"]) == ("203.0.113.10", "POST")
    assert result["origin"] == "api"
    assert (result["path"], result["user_agent"]) == ("/api/invoices/", "pytest-agent/1.0")
    assert result["metadata"] == {"to": "client@example.com"}
    assert result["success"] is True
    assert result["created_at"]


def test_an_anonymous_entry_has_a_null_user(staff_api):
    entry = AuditLogFactory()

    result = next(e for e in staff_api.get(LOGS).json()["results"] if e["id"] == entry.id)

    assert result["user"] is None


def test_an_entry_is_written_as_drfs_fields_would_write_it(user):
    from rest_framework.serializers import ModelSerializer

    from audit.api.serializers import AuditLogSerializer

    AuditLogFactory(
        metadata={"changes": {"status": ["draft", "sent"]}, "n": [1, "2", None]},
        context=request_context(user_id=user.pk, user_email=user.email),
    )
    AuditLogFactory(success=False, context=request_context(ip_address="2001:db8::1"))
    AuditLogFactory(target=None)  # anonymous, no address, no target
    for entry in AuditLog.objects.all():
        serializer = AuditLogSerializer(entry)
        expected = ModelSerializer.to_representation(serializer, entry)
        assert list(serializer.data.items()) == list(expected.items())


def test_page_size_is_honoured(staff_api):
    AuditLogFactory.create_batch(5)

    assert len(ids(staff_api.get(LOGS, {"page_size": 2}))) == 2


def test_page_size_is_at_most_200(staff_api):
    AuditLogFactory.create_batch(205)

    assert len(ids(staff_api.get(LOGS, {"page_size": 500}))) == 200


def test_following_next_pages_through_everything_once(staff_api):
    AuditLogFactory.create_batch(10)
    seen, url = [], f"{LOGS}?page_size=3"

    while url:
        page = staff_api.get(url).json()
        seen += [entry["id"] for entry in page["results"]]
        url = page["next"]

    assert seen == all_ids_newest_first()


def test_entries_written_while_paging_do_not_shift_the_pages(staff_api):
    AuditLogFactory.create_batch(6)
    first = staff_api.get(LOGS, {"page_size": 3}).json()

    AuditLogFactory.create_batch(2)
    second = staff_api.get(first["next"]).json()

    assert [e["id"] for e in second["results"]] == [e["id"] - 3 for e in first["results"]]


# Filters


def test_action_filter_matches_exactly(staff_api):
    sent = AuditLogFactory(action="invoice.sent")
    AuditLogFactory(action="invoice.send_refused")
    AuditLogFactory(action="invoice.paid")

    assert ids(staff_api.get(LOGS, {"action": "invoice.sent"})) == [sent.id]


def test_action_filter_ending_in_a_dot_matches_the_prefix(staff_api):
    invoice_entries = [
        AuditLogFactory(action="invoice.sent"),
        AuditLogFactory(action="invoice.paid"),
    ]
    AuditLogFactory(action="invoice_item.created")
    AuditLogFactory(action="user.login")

    response = staff_api.get(LOGS, {"action": "invoice."})

    assert ids(response) == [e.id for e in reversed(invoice_entries)]


def test_user_filter(staff_api):
    alice, bob = UserFactory(), UserFactory()
    own = AuditLogFactory(context=request_context(user_id=alice.pk, user_email=alice.email))
    AuditLogFactory(context=request_context(user_id=bob.pk, user_email=bob.email))

    response = staff_api.get(LOGS, {"user": alice.pk})

    assert own.id in ids(response)
    assert ids(response) == all_ids_newest_first(user_id=alice.pk)


def test_resource_filters(staff_api):
    wanted = AuditLogFactory(target=("invoice", 7))
    AuditLogFactory(target=("invoice", 8))
    payment = AuditLogFactory(target=("payment", 7))

    response = staff_api.get(LOGS, {"resource_type": "invoice", "resource_id": "7"})

    assert ids(response) == [wanted.id]
    assert ids(staff_api.get(LOGS, {"resource_id": "7"})) == [payment.id, wanted.id]


def test_success_filter(staff_api):
    failed = AuditLogFactory(success=False)
    AuditLogFactory(success=True)

    assert ids(staff_api.get(LOGS, {"success": "false"})) == [failed.id]
    assert failed.id not in ids(staff_api.get(LOGS, {"success": "true"}))


def test_ip_filter(staff_api):
    wanted = AuditLogFactory(context=request_context(ip_address="198.51.100.1"))
    AuditLogFactory(context=request_context(ip_address="198.51.100.2"))

    assert ids(staff_api.get(LOGS, {"ip": "198.51.100.1"})) == [wanted.id]


def test_origin_filter(staff_api):
    from_the_admin = AuditLogFactory(context=request_context(origin="admin"))
    AuditLogFactory(context=request_context(origin="api"))

    assert ids(staff_api.get(LOGS, {"origin": "admin"})) == [from_the_admin.id]


def test_since_and_until_filters(staff_api):
    old = AuditLogFactory()
    age_entries(days=10)
    young = AuditLogFactory()
    middle = (timezone.now() - datetime.timedelta(days=5)).isoformat()

    since = ids(staff_api.get(LOGS, {"since": middle}))
    until = ids(staff_api.get(LOGS, {"until": middle}))

    assert young.id in since
    assert old.id not in since
    assert until == all_ids_newest_first(id__lte=old.id)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", "yesterday"),
        ("until", "2026-13-45T99:00:00"),
        ("user", "abc"),
        ("ip", "999.1.1.1"),
        ("ip", "not-an-ip"),
        ("resource_id", "x" * 65),
        ("success", "maybe"),
        ("origin", "elsewhere"),
    ],
)
def test_a_bad_filter_value_is_400_naming_the_field(staff_api, field, value):
    response = staff_api.get(LOGS, {field: value})

    assert response.status_code == 400
    assert field in response.json()


# The other lists


def test_admin_actions_are_a_cursor_page_newest_first(staff_api, staff):
    with audit_context.bind(request_context(user_id=staff.pk, user_email=staff.email)):
        first = services.record_admin_action(AdminAction.Kind.TOOL, action="admin.audit_cleanup")
        second = services.record_admin_action(AdminAction.Kind.API, action="admin.audit_export")

    response = staff_api.get("/api/audit/admin-actions/")

    page = response.json()
    assert set(page) == {"next", "previous", "results"}
    assert [a["id"] for a in page["results"]] == [second.id, first.id]
    assert page["results"][0]["admin"] == staff.pk
    assert page["results"][0]["admin_email"] == staff.email
    assert page["results"][0]["kind"] == "api"


def test_security_events_list_only_security_relevant_entries(staff_api):
    security = [
        AuditLogFactory(action="user.login_failed", success=False),
        AuditLogFactory(action="security.token_misuse", success=False),
        AuditLogFactory(action="security.permission_denied", success=False),
        AuditLogFactory(action="security.brute_force_suspected", success=False),
        AuditLogFactory(action="user.password_changed"),
    ]
    AuditLogFactory(action="invoice.created")
    AuditLogFactory(action="user.login")

    response = staff_api.get("/api/audit/security-events/")

    assert ids(response) == [entry.id for entry in reversed(security)]


def test_user_logs_list_that_users_entries(staff_api):
    alice = UserFactory()
    AuditLogFactory(context=request_context(user_id=alice.pk, user_email=alice.email))
    AuditLogFactory()

    response = staff_api.get(f"/api/audit/user/{alice.pk}/logs/")

    assert ids(response) == all_ids_newest_first(user_id=alice.pk)
    assert len(ids(response)) >= 1


def test_resource_logs_list_that_resources_entries(staff_api):
    wanted = [AuditLogFactory(target=("invoice", 5)), AuditLogFactory(target=("invoice", 5))]
    AuditLogFactory(target=("invoice", 6))
    AuditLogFactory(target=("payment", 5))

    response = staff_api.get("/api/audit/resource/invoice/5/logs/")

    assert ids(response) == [wanted[1].id, wanted[0].id]


# Cleanup


def test_cleanup_leaves_months_not_archived_yet_to_the_beat(staff_api):
    AuditLogFactory.create_batch(3)
    age_entries(days=400)
    services.seal_audit_log()
    old = AuditLog.objects.count()

    response = staff_api.delete("/api/audit/cleanup/?days=365")

    assert response.status_code == 200
    assert (response.json()["deleted"], response.json()["unarchived"]) == (0, old)
    assert not Archive.objects.exists()


def test_cleanup_deletes_and_answers_the_count_and_cutoff(staff_api, old_sealed_entries):
    response = staff_api.delete("/api/audit/cleanup/?days=365")

    assert response.status_code == 200
    body = response.json()
    assert body["deleted"] == old_sealed_entries.row_count
    cutoff = datetime.datetime.fromisoformat(body["cutoff"])
    expected = timezone.now() - datetime.timedelta(days=365)
    assert abs(cutoff - expected) < datetime.timedelta(minutes=1)
    assert not AuditLog.objects.filter(id__lte=old_sealed_entries.last_id).exists()


def test_cleanup_dry_run_deletes_nothing(staff_api, old_sealed_entries):
    count = AuditLog.objects.count()

    response = staff_api.delete("/api/audit/cleanup?days=365&dry_run=true")

    assert response.status_code == 200
    assert response.json()["deleted"] == old_sealed_entries.row_count
    assert AuditLog.objects.count() == count + 1


@pytest.mark.parametrize("query", ["?days=30", "?days=0", "?days=abc", ""])
def test_cleanup_with_bad_or_too_few_days_is_400_naming_days(staff_api, old_sealed_entries, query):
    response = staff_api.delete(f"/api/audit/cleanup/{query}")

    assert response.status_code == 400
    assert "days" in response.json()
    assert AuditLog.objects.filter(id__lte=old_sealed_entries.last_id).count() == (
        old_sealed_entries.row_count
    )


def test_cleanup_through_the_api_is_audited(staff_api, staff, old_sealed_entries):
    mark = last_entry_id()

    staff_api.delete("/api/audit/cleanup/?days=365", HTTP_X_REQUEST_ID="cleanup-1")

    entry = only_entry(mark, "admin.audit_cleanup")
    assert (entry.user_id, entry.request_id) == (staff.pk, "cleanup-1")
    assert entry.metadata["deleted"] == old_sealed_entries.row_count
    action = AdminAction.objects.get(action="admin.audit_cleanup")
    assert (action.kind, action.admin_id) == (AdminAction.Kind.API, staff.pk)
