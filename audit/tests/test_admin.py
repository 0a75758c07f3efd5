"""The Django admin: a read-only trail to browse, filter, search, export and prune; and every
admin add, change, delete and bulk action leaves AdminAction rows, and the change its entry under
its domain name with origin `admin`."""

import csv
import datetime
import io
import json

import pytest
from django.contrib.admin import site
from django.contrib.auth.models import Permission
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit import context as audit_context
from audit import services
from audit.models import AdminAction, AuditLog
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import (
    actions_after,
    age_entries,
    entries_after,
    indexes_in,
    last_entry_id,
    only_entry,
)
from invoicegen.accounts.models import User
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import InvoiceFactory, invoice_in_status
from notifications.tests.factories import NO_PREFERENCE_FORMS

pytestmark = pytest.mark.django_db

LOG_LIST = reverse("admin:audit_auditlog_changelist")
ACTION_LIST = reverse("admin:audit_adminaction_changelist")
CLEANUP = reverse("admin:audit_auditlog_cleanup")


def listed(response) -> list[int]:
    """The ids the changelist shows."""
    assert response.status_code == 200
    return [entry.pk for entry in response.context["cl"].result_list]


def admin_action():
    return AdminAction.objects.get()


# Browsing


def test_the_audit_log_changelist_renders(admin):
    entry = AuditLogFactory(action="invoice.sent", target=("invoice", 42))

    response = admin.get(LOG_LIST)

    assert entry.pk in listed(response)
    assert "invoice.sent" in response.content.decode()


def test_an_audit_log_detail_page_renders_read_only(admin):
    entry = AuditLogFactory(action="invoice.sent", metadata={"to": "client@example.com"})

    response = admin.get(reverse("admin:audit_auditlog_change", args=[entry.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "client@example.com" in page
    assert entry.digest in page
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page


def test_the_admin_action_changelist_and_detail_render(admin, superuser):
    with audit_context.bind(request_context(user_id=superuser.pk, user_email=superuser.email)):
        action = services.record_admin_action(
            AdminAction.Kind.TOOL, action="admin.audit_cleanup", details={"days": 400}
        )

    assert action.pk in listed(admin.get(ACTION_LIST))
    detail = admin.get(reverse("admin:audit_adminaction_change", args=[action.pk]))
    assert detail.status_code == 200
    assert "admin.audit_cleanup" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()


@pytest.mark.parametrize("model", ["auditlog", "adminaction"])
def test_no_one_may_add_audit_rows(admin, model):
    assert admin.get(reverse(f"admin:audit_{model}_add")).status_code == 403
    assert admin.post(reverse(f"admin:audit_{model}_add"), {"action": "x"}).status_code == 403


def test_no_one_may_change_an_audit_entry(admin):
    entry = AuditLogFactory(action="invoice.sent")

    response = admin.post(
        reverse("admin:audit_auditlog_change", args=[entry.pk]), {"action": "invoice.paid"}
    )

    assert response.status_code == 403
    assert AuditLog.objects.get(pk=entry.pk).action == "invoice.sent"


@pytest.mark.parametrize("method", ["get", "post"])
def test_no_one_may_delete_an_audit_entry(admin, method):
    entry = AuditLogFactory()

    response = getattr(admin, method)(reverse("admin:audit_auditlog_delete", args=[entry.pk]))

    assert response.status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_the_changelists_offer_no_delete_action(admin):
    AuditLogFactory()

    for url in (LOG_LIST, ACTION_LIST):
        assert "delete_selected" not in admin.get(url).content.decode()


# Filters and search


def test_the_action_prefix_filter(admin):
    invoice_entries = [
        AuditLogFactory(action="invoice.sent"),
        AuditLogFactory(action="invoice.paid"),
    ]
    AuditLogFactory(action="invoice_item.created")

    response = admin.get(LOG_LIST, {"action_prefix": "invoice."})

    assert sorted(listed(response)) == [e.pk for e in invoice_entries]


def test_the_category_filter(admin):
    AuditLogFactory(action="invoice.sent")
    failed = AuditLogFactory(action="payment.failed", success=False)

    assert listed(admin.get(LOG_LIST, {"category": "payment"})) == [failed.pk]


def test_the_success_filter(admin):
    failed = AuditLogFactory(success=False)
    AuditLogFactory(success=True)

    assert listed(admin.get(LOG_LIST, {"success__exact": "0"})) == [failed.pk]


def test_the_date_filters(admin):
    old = AuditLogFactory()
    age_entries(days=30)
    young = AuditLogFactory()
    young.refresh_from_db()
    day = timezone.localtime(young.created_at)
    week_ago = (day - datetime.timedelta(days=7)).isoformat()

    by_day = listed(
        admin.get(
            LOG_LIST,
            {
                "created_at__year": day.year,
                "created_at__month": day.month,
                "created_at__day": day.day,
            },
        )
    )
    past_week = listed(admin.get(LOG_LIST, {"created_at__gte": week_ago}))

    assert young.pk in by_day
    assert old.pk not in by_day
    assert young.pk in past_week
    assert old.pk not in past_week


@pytest.mark.parametrize(
    ("term", "wanted"),
    [
        ("Someone@Example.com", "by_email"),
        ("198.51.100.77", "by_ip"),
        ("invoice:42", "by_resource"),
    ],
)
def test_search_by_email_ip_or_resource(admin, term, wanted):
    someone = UserFactory(email="someone@example.com")
    entries = {
        "by_email": AuditLogFactory(
            actor=someone, context=request_context(ip_address="192.0.2.1"), target=("x", 1)
        ),
        "by_ip": AuditLogFactory(context=request_context(ip_address="198.51.100.77")),
        "by_resource": AuditLogFactory(target=("invoice", 42)),
    }

    found = listed(admin.get(LOG_LIST, {"q": term}))

    assert entries[wanted].pk in found
    assert not {entry.pk for name, entry in entries.items() if name != wanted} & set(found)


def test_search_by_an_action_name(admin):
    sent = AuditLogFactory(action="invoice.sent")
    AuditLogFactory(action="invoice.updated")

    assert listed(admin.get(LOG_LIST, {"q": "invoice.sent"})) == [sent.pk]


def test_search_by_the_start_of_an_email_in_any_case(admin):
    grace = UserFactory(email="grace@example.com")
    hers = AuditLogFactory(actor=grace, target=("x", 1))
    not_hers = AuditLogFactory(actor=UserFactory(email="ada@example.com"), target=("x", 2))

    found = listed(admin.get(LOG_LIST, {"q": "GRAce"}))

    assert hers.pk in found
    assert not_hers.pk not in found


@pytest.mark.parametrize(
    "shape", [str, lambda number: number[:8].lower()]
)  # INV-2026-001, inv-2026
def test_search_by_the_start_of_a_resources_label_in_any_case(admin, shape):
    mark = last_entry_id()
    invoice = InvoiceFactory()
    about_it = entries_after(mark, resource_type="invoice", resource_id=str(invoice.pk))
    about_it = set(about_it.values_list("pk", flat=True))
    AuditLogFactory(target=("invoice", invoice.pk + 1))

    found = listed(admin.get(LOG_LIST, {"q": shape(invoice.number)}))

    assert about_it and set(found) == about_it


@pytest.mark.parametrize("term", ["10.0.", "10.0.3", "2001:DB8:"])
def test_search_by_the_start_of_an_ip_address(admin, term):
    v4 = AuditLogFactory(context=request_context(ip_address="10.0.3.4"))
    v6 = AuditLogFactory(context=request_context(ip_address="2001:db8::1"))
    AuditLogFactory(context=request_context(ip_address="110.0.3.4"))

    assert listed(admin.get(LOG_LIST, {"q": term})) == [v6.pk if ":" in term else v4.pk]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plans")
@pytest.mark.parametrize(
    ("term", "index"),
    [
        ("grace", "audit_email_prefix"),
        ("inv-2026", "audit_label_prefix"),
        ("10.0.", "audit_ip_prefix"),
    ],
)
def test_a_search_by_a_prefix_is_served_by_its_index(admin, rf, term, index):
    """On a large trail a LIKE without its index reads every row; a tiny table's plan would be
    a sequential scan anyway, so the planner is told to avoid one."""
    request = rf.get(LOG_LIST)
    model_admin = site._registry[AuditLog]
    found, _ = model_admin.get_search_results(request, AuditLog.objects.all(), term)

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = found.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert index in indexes_in(plan)


def test_a_search_reads_no_date_bounds_of_what_it_matches(admin):
    """The date hierarchy's bounds over a search's matches can read the whole trail."""
    AuditLogFactory(context=request_context(ip_address="10.0.3.4"))
    bounds = 'MIN("audit_auditlog"."created_at")'

    with CaptureQueriesContext(connection) as browsing:
        assert admin.get(LOG_LIST).status_code == 200
    with CaptureQueriesContext(connection) as searching:
        assert admin.get(LOG_LIST, {"q": "10.0."}).status_code == 200

    assert any(bounds in query["sql"] for query in browsing)
    assert not any(bounds in query["sql"] for query in searching)


@pytest.mark.parametrize("term", ["999.1.1.1", "1.2.3", "::g", "a:b:c", "'; DROP TABLE x;--"])
def test_an_odd_search_term_finds_nothing_and_does_not_fail(admin, term):
    AuditLogFactory(context=request_context(ip_address="198.51.100.77"))

    assert listed(admin.get(LOG_LIST, {"q": term})) == []


# The detail page


def test_the_detail_page_shows_the_changes_readably(admin):
    invoice = InvoiceFactory(client_name="Acme")
    mark = last_entry_id()
    invoice.client_name = "Globex"
    invoice.save(update_fields=["client_name"])
    entry = only_entry(mark, "invoice.updated")

    page = admin.get(reverse("admin:audit_auditlog_change", args=[entry.pk])).content.decode()

    assert '<table class="audit-changes">' in page
    assert "<tr><th>client_name</th><td>Acme</td><td>→</td><td>Globex</td></tr>" in page


def test_the_detail_page_escapes_what_the_entry_holds(admin):
    entry = AuditLogFactory(
        target=("invoice", "<b>42</b>"),
        metadata={"note": "<script>alert(1)</script>", "changes": {"name": ["<i>a</i>", "b"]}},
    )

    page = admin.get(reverse("admin:audit_auditlog_change", args=[entry.pk])).content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "<i>a</i>" not in page
    assert "<b>42</b>" not in page
    assert "&lt;i&gt;a&lt;/i&gt;" in page


def test_the_detail_page_links_to_the_resources_history(admin):
    entry = AuditLogFactory(target=("invoice", 42))
    other = AuditLogFactory(target=("invoice", 43))
    history = LOG_LIST + "?resource_type=invoice&amp;resource_id=42"

    page = admin.get(reverse("admin:audit_auditlog_change", args=[entry.pk])).content.decode()

    assert f'href="{history}"' in page
    shown = listed(admin.get(LOG_LIST, {"resource_type": "invoice", "resource_id": "42"}))
    assert entry.pk in shown
    assert other.pk not in shown


def test_the_detail_page_links_to_the_actors_history(admin, user):
    entry = AuditLogFactory(context=request_context(user_id=user.pk, user_email=user.email))
    AuditLogFactory()

    page = admin.get(reverse("admin:audit_auditlog_change", args=[entry.pk])).content.decode()

    assert f'href="{LOG_LIST}?user_id={user.pk}"' in page
    assert listed(admin.get(LOG_LIST, {"user_id": user.pk})) == list(
        AuditLog.objects.filter(user_id=user.pk).values_list("pk", flat=True)
    )


# Export actions


def export(admin, action, entries):
    return admin.post(
        LOG_LIST, {"action": action, "_selected_action": [entry.pk for entry in entries]}
    )


def test_the_csv_export_action_streams_the_selected_entries(admin, superuser):
    chosen = AuditLogFactory.create_batch(2)
    AuditLogFactory()
    mark = last_entry_id()

    response = export(admin, "export_csv", chosen)

    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [entry.pk for entry in chosen]
    entry = only_entry(mark, "admin.audit_export")
    assert entry.user_id == superuser.pk
    assert entry.metadata["format"] == "csv"
    action = admin_action()
    assert (action.kind, action.action) == (AdminAction.Kind.BULK_ACTION, "admin.audit_export")


def test_the_jsonl_export_action_streams_the_selected_entries(admin):
    chosen = AuditLogFactory.create_batch(2)

    response = export(admin, "export_jsonl", chosen)

    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [entry.pk for entry in chosen]


def test_exporting_needs_the_export_permission(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    client.force_login(staff)
    entry = AuditLogFactory()

    response = export(client, "export_csv", [entry])

    assert not isinstance(response, StreamingHttpResponse)
    assert not AuditLog.objects.filter(action="admin.audit_export").exists()
    assert not AdminAction.objects.exists()


# The cleanup screen


def test_the_cleanup_screen_renders(admin):
    response = admin.get(CLEANUP)

    assert response.status_code == 200
    assert 'id="audit-cleanup-form"' in response.content.decode()
    assert "The minimum is 365 days" in response.content.decode()


def test_the_cleanup_screen_previews_the_count_on_a_dry_run(admin, old_sealed_entries):
    count = AuditLog.objects.count()

    response = admin.post(CLEANUP, {"days": 365, "preview": "Preview"})

    page = response.content.decode()
    assert f"{old_sealed_entries.row_count} entries older than" in page
    assert 'name="confirm"' in page
    assert AuditLog.objects.count() == count + 1  # only the dry run's own entry


def test_the_cleanup_screen_deletes_on_confirm(admin, superuser, old_sealed_entries):
    mark = last_entry_id()

    response = admin.post(CLEANUP, {"days": 365, "confirm": "Delete"}, follow=True)

    assert response.status_code == 200
    assert f"Deleted {old_sealed_entries.row_count} audit entries" in response.content.decode()
    assert not AuditLog.objects.filter(id__lte=old_sealed_entries.last_id).exists()
    entry = only_entry(mark, "admin.audit_cleanup")
    assert entry.user_id == superuser.pk
    assert entry.path == CLEANUP


def test_a_cleanup_in_the_admin_is_an_admin_action(admin, superuser, old_sealed_entries):
    admin.post(CLEANUP, {"days": 365, "confirm": "Delete"})

    action = AdminAction.objects.get(action="admin.audit_cleanup")
    assert (action.kind, action.admin_id) == (AdminAction.Kind.TOOL, superuser.pk)


def test_the_cleanup_screen_refuses_below_the_minimum(admin, old_sealed_entries):
    count = AuditLog.objects.count()

    response = admin.post(CLEANUP, {"days": 30, "confirm": "Delete"})

    assert response.status_code == 200
    assert response.context["form"].errors["days"] == [
        "Audit entries must be kept at least 365 days; got 30."
    ]
    assert AuditLog.objects.count() == count


def test_the_cleanup_screen_needs_the_prune_permission(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    client.force_login(staff)

    assert client.get(LOG_LIST).status_code == 200
    assert client.get(CLEANUP).status_code == 403


def test_the_audit_list_links_to_the_cleanup_screen(admin):
    page = admin.get(LOG_LIST).content.decode()

    assert f'<a href="{CLEANUP}" id="audit-cleanup-link">' in page


def test_the_audit_list_offers_no_cleanup_to_whom_may_not_prune(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    client.force_login(staff)

    assert CLEANUP not in client.get(LOG_LIST).content.decode()


# Admin actions on audited models


def test_editing_a_user_records_one_user_updated_from_the_admin_and_one_admin_action(
    admin, superuser
):
    member = UserFactory(name="Before")
    mark = last_entry_id()

    response = admin.post(
        reverse("admin:accounts_user_change", args=[member.pk]),
        {
            **NO_PREFERENCE_FORMS,
            "email": member.email,
            "name": "After",
            "language": "en",
            "timezone": "UTC",
            "email_verified": "on",
            "is_active": "on",
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert User.objects.get(pk=member.pk).name == "After"
    entry = only_entry(mark, "user.updated")  # its domain name, whatever the origin
    assert (entry.user_id, entry.resource_id, entry.origin) == (
        superuser.pk,
        str(member.pk),
        "admin",
    )
    assert entry.metadata["changes"]["name"] == ["Before", "After"]
    assert actions_after(mark) == ["user.updated"]
    action = admin_action()
    assert (action.kind, action.action) == (AdminAction.Kind.CHANGE, "admin.user_updated")
    assert (action.admin_id, action.target_id) == (superuser.pk, str(member.pk))
    assert action.target_type == "accounts.user"


def test_adding_a_user_records_user_created_from_the_admin_and_an_admin_action(admin, superuser):
    mark = last_entry_id()

    response = admin.post(
        reverse("admin:accounts_user_add"),
        {
            "email": "added@example.com",
            "name": "Added",
            "password1": "a-Long-enough-pass-42",
            "password2": "a-Long-enough-pass-42",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    added = User.objects.get(email="added@example.com")
    entry = only_entry(mark, "user.created")
    assert (entry.resource_id, entry.origin) == (str(added.pk), "admin")
    assert entry.metadata["changes"]["password"] == [None, services.REDACTED]
    assert added.password not in json.dumps(entry.metadata)
    action = AdminAction.objects.get(kind=AdminAction.Kind.ADD)
    assert (action.action, action.target_id) == ("admin.user_created", str(added.pk))


def test_deleting_a_user_records_user_deleted_from_the_admin_and_an_admin_action(admin, superuser):
    member = UserFactory()
    member_id = member.pk
    mark = last_entry_id()

    response = admin.post(reverse("admin:accounts_user_delete", args=[member_id]), {"post": "yes"})

    assert response.status_code == 302
    entry = only_entry(mark, "user.deleted")
    assert (entry.user_id, entry.resource_id, entry.origin) == (
        superuser.pk,
        str(member_id),
        "admin",
    )
    action = AdminAction.objects.get(kind=AdminAction.Kind.DELETE)
    assert (action.action, action.target_id) == ("admin.user_deleted", str(member_id))


def test_a_bulk_action_records_one_admin_bulk_action(admin, superuser):
    invoices = [invoice_in_status("finalized"), invoice_in_status("sent")]
    mark = last_entry_id()

    admin.post(
        reverse("admin:billing_invoice_changelist"),
        {
            "action": "void_selected",
            "_selected_action": [invoice.pk for invoice in invoices],
            "post": "yes",  # as the confirmation page sends it
        },
    )

    assert Invoice.objects.filter(status=Invoice.Status.VOID).count() == 2
    entry = only_entry(mark, "admin.bulk_action")
    assert entry.user_id == superuser.pk
    assert entry.metadata["action_name"] == "void_selected"
    assert entry.metadata["count"] == 2
    assert sorted(entry.metadata["ids"]) == sorted(str(invoice.pk) for invoice in invoices)
    voids = entries_after(mark, action="invoice.voided")  # an admin void is a void
    assert [(e.user_id, e.origin) for e in voids] == [(superuser.pk, "admin")] * 2
    action = AdminAction.objects.get(kind=AdminAction.Kind.BULK_ACTION)
    assert (action.action, action.details["count"]) == ("admin.bulk_action", 2)


def test_an_action_s_confirmation_page_records_nothing_until_confirmed(admin, superuser):
    members = [UserFactory(), UserFactory()]
    selected = {"action": "delete_selected", "_selected_action": [m.pk for m in members]}
    mark = last_entry_id()

    page = admin.post(reverse("admin:accounts_user_changelist"), selected)

    assert page.status_code == 200  # "Are you sure?"
    assert actions_after(mark) == []
    assert not AdminAction.objects.exists()

    admin.post(reverse("admin:accounts_user_changelist"), {**selected, "post": "yes"})

    assert not User.objects.filter(pk__in=[m.pk for m in members]).exists()
    assert only_entry(mark, "admin.bulk_action").metadata["count"] == 2
    assert AdminAction.objects.filter(kind=AdminAction.Kind.BULK_ACTION).count() == 1
