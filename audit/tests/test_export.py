"""GET /api/audit/logs/export/: the trail as streamed CSV or JSON Lines, filtered like logs/,
safe to open in a spreadsheet, and itself audited."""

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from audit import export
from audit.models import AdminAction, AuditLog
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import last_entry_id, only_entry

pytestmark = pytest.mark.django_db

EXPORT = "/api/audit/logs/export/"


def content(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content(response))))


def jsonl_rows(response) -> list[dict]:
    return [json.loads(line) for line in content(response).splitlines()]


def test_csv_export_streams_every_entry_oldest_first(staff_api):
    AuditLogFactory.create_batch(3)

    response = staff_api.get(EXPORT, {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    assert response["Content-Disposition"].endswith('.csv"')
    text = content(response)
    assert text.splitlines()[0] == ",".join(export.FIELDS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["id"]) for row in rows] == list(
        AuditLog.objects.order_by("id").values_list("id", flat=True)
    )


def test_csv_is_the_default_format(staff_api):
    response = staff_api.get(EXPORT)

    assert response["Content-Type"] == "text/csv; charset=utf-8"


def test_jsonl_export_streams_one_json_object_per_entry(staff_api):
    entry = AuditLogFactory(action="invoice.sent", metadata={"to": "client@example.com"})

    response = staff_api.get(EXPORT, {"format": "jsonl"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith('.jsonl"')
    rows = jsonl_rows(response)
    assert len(rows) == AuditLog.objects.count()
    exported = next(row for row in rows if row["id"] == entry.id)
    assert set(exported) == set(export.FIELDS)
    assert exported["action"] == "invoice.sent"
    assert exported["metadata"] == {"to": "client@example.com"}
    assert exported["resource_id"] == entry.resource_id


def test_an_unknown_format_is_refused_naming_the_field(staff_api):
    response = staff_api.get(EXPORT, {"format": "xlsx"})

    assert response.status_code == 400
    assert "format" in response.json()


def test_export_takes_the_filters_of_the_logs_list(staff_api):
    wanted = AuditLogFactory(action="invoice.sent", target=("invoice", 7), success=False)
    AuditLogFactory(action="invoice.sent", target=("invoice", 7), success=True)
    AuditLogFactory(action="user.login", target=("invoice", 7), success=False)

    response = staff_api.get(
        EXPORT, {"format": "jsonl", "action": "invoice.", "success": "false", "resource_id": "7"}
    )

    assert [row["id"] for row in jsonl_rows(response)] == [wanted.id]


def test_export_refuses_bad_filter_values_naming_the_field(staff_api):
    response = staff_api.get(EXPORT, {"since": "yesterday"})

    assert response.status_code == 400
    assert "since" in response.json()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(staff_api, start):
    value = f'{start}HYPERLINK("http://evil.test","x")'
    entry = AuditLogFactory(target=("invoice", value))

    rows = csv_rows(staff_api.get(EXPORT, {"format": "csv"}))

    exported = next(row for row in rows if row["id"] == str(entry.id))
    assert exported["resource_id"] == f"'{value}"


def test_a_formula_sent_as_user_agent_is_neutralised_in_csv(staff_api, anon_client):
    anon_client.post(
        "/api/auth/login/",
        {"email": "x@example.com", "password": "nope"},
        HTTP_USER_AGENT="=cmd|' /C calc'!A0",
    )

    rows = csv_rows(staff_api.get(EXPORT, {"format": "csv", "action": "user.login_failed"}))

    assert [row["user_agent"] for row in rows] == ["'=cmd|' /C calc'!A0"]


def test_jsonl_values_are_exported_verbatim(staff_api):
    entry = AuditLogFactory(target=("invoice", "=1+1"))

    rows = jsonl_rows(staff_api.get(EXPORT, {"format": "jsonl"}))

    assert next(row for row in rows if row["id"] == entry.id)["resource_id"] == "=1+1"


def test_every_export_is_audited_with_an_entry_and_an_admin_action(staff_api, staff):
    mark = last_entry_id()

    response = staff_api.get(
        EXPORT, {"format": "jsonl", "action": "invoice."}, HTTP_X_REQUEST_ID="export-1"
    )
    content(response)

    entry = only_entry(mark, "admin.audit_export")
    assert (entry.user_id, entry.request_id) == (staff.pk, "export-1")
    assert entry.metadata == {"format": "jsonl", "filters": {"action": "invoice."}}
    action = AdminAction.objects.get(action="admin.audit_export")
    assert (action.admin_id, action.admin_email) == (staff.pk, staff.email)
    assert action.kind == AdminAction.Kind.API
    assert action.details == {"format": "jsonl", "filters": {"action": "invoice."}}
    assert action.request_id == "export-1"


def test_an_export_records_the_filters_it_applied(staff_api):
    mark = last_entry_id()

    response = staff_api.get(EXPORT, {"action": "invoice.", "format": "jsonl"})

    assert response.status_code == 200
    content(response)
    entry = only_entry(mark, "admin.audit_export")
    assert entry.metadata["filters"] == {"action": "invoice."}


def test_an_export_refuses_a_parameter_it_does_not_take_and_records_nothing(staff_api):
    """A misspelt filter would export the whole trail; its name may be anything (a NUL,
    which PostgreSQL's JSON cannot hold, made this a 500)."""
    mark = last_entry_id()

    response = staff_api.get(EXPORT, {"action": "invoice.", "utm\x00": "x\x00y"})

    assert response.status_code == 400
    assert list(response.json()) == ["utm\x00"]
    assert "takes action," in response.json()["utm\x00"][0]
    assert not AuditLog.objects.filter(id__gt=mark, action="admin.audit_export").exists()


def test_export_is_for_staff_only(api, anon_client):
    assert anon_client.get(EXPORT).status_code == 401
    assert api.get(EXPORT).status_code == 403
    assert not AuditLog.objects.filter(action="admin.audit_export").exists()
