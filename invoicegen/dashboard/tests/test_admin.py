"""The dashboard page of the admin: staff only, linked from the index, four charts."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from audit.tests.factories import AuditLogFactory
from invoicegen.accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


def test_the_page_has_a_url_in_the_admin():
    assert reverse("admin:dashboard") == URL


def test_anonymous_visitors_are_sent_to_the_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_a_user_who_is_not_staff_is_refused(client):
    client.force_login(UserFactory(is_staff=False))

    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert b'class="chart"' not in response.content


def staff_who_may_read_the_trail_outbox_and_links():
    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_auditlog", "view_emaillog", "view_securedownloadtoken"]
        )
    )
    return staff


def test_staff_without_the_permission_to_read_what_it_counts_are_refused(client):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_invoice"))
    client.force_login(staff)

    assert client.get(URL).status_code == 403
    assert 'id="dashboard-module"' not in client.get("/admin/").content.decode()


def test_staff_see_four_charts_of_the_last_30_days_in_the_sites_time_zone(client):
    AuditLogFactory(action="user.login_failed", success=False)
    client.force_login(staff_who_may_read_the_trail_outbox_and_links())

    response = client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<svg class="chart"') == 4
    for title in (
        "Audit entries per day, by category",
        "Failed logins and security events per day",
        "Email outbox per day",
        "Downloads per day",
    ):
        assert f"{title}</text>" in page
    assert "by day in America/New_York" in page
    today = timezone.localdate()
    assert "failed logins</text>" in page  # in the legend
    assert f"<title>{today:%b} {today.day}, failed logins: 1</title>" in page  # a bar today


def test_the_admin_index_links_to_the_dashboard(client):
    client.force_login(staff_who_may_read_the_trail_outbox_and_links())

    response = client.get("/admin/")

    assert f'<a href="{URL}">Dashboard</a>' in response.content.decode()


def test_staff_see_when_the_trail_was_last_verified_and_how_far_it_is_archived(client):
    from audit import services
    from audit.models import Archive

    client.force_login(staff_who_may_read_the_trail_outbox_and_links())
    before = client.get(URL).content.decode()
    AuditLogFactory.create_batch(2)
    services.seal_audit_log()
    result = services.check_audit_log()
    Archive.objects.create(
        month="2026-10-01", first_id=1, last_id=1, row_count=1, manifest="m", manifest_sha256="0"
    )

    after = client.get(URL).content.decode()

    assert "has not been verified yet" in before and "No month is archived yet" in before
    assert f"({result.checked} entries)" in after
    assert "The audit trail was last verified" in after
    assert "Archived through October 2026." in after


def test_a_failed_verification_after_the_last_good_one_shows_on_the_dashboard(client):
    from audit import services

    client.force_login(staff_who_may_read_the_trail_outbox_and_links())
    services.check_audit_log()
    services.log(
        "audit.tamper_detected", metadata={"first_bad_id": 42, "checked": 9}, success=False
    )

    page = client.get(URL).content.decode()

    assert "FAILED at entry #42" in page
    assert "was last verified" not in page
