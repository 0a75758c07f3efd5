"""A staff member opens the dashboard from the admin index in a real browser: four charts,
with bars and points where there was activity, their legends, and a screenshot of it."""

import datetime

import pytest
from django.utils import timezone

from downloads.tests.factories import DownloadEventFactory
from emails.models import EmailLog
from emails.tests.factories import EmailLogFactory
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.dashboard.tests.helpers import entries_at
from tests.browser.dashboard import save_dashboard

pytestmark = pytest.mark.django_db(transaction=True)


def days_ago(days: int) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days)


def a_month_of_activity() -> None:
    actions = ["user.login", "user.login_failed", "download.succeeded", "security.token_misuse"]
    entries_at(*[(action, days_ago(n)) for n in range(0, 28, 3) for action in actions[: n % 4 + 1]])
    for n in range(28):
        for sent in range(n % 4 + 1):  # one email a day stays queued
            sending = {"status": EmailLog.Status.SENT, "sent_at": days_ago(n)} if sent else {}
            EmailLogFactory(created_at=days_ago(n), **sending)
        for granted in range(n % 3 + 1):
            DownloadEventFactory(created_at=days_ago(n), granted=bool(granted or n % 2))
    EmailLogFactory(created_at=days_ago(5), failed=True, claimed_at=days_ago(5))


def test_staff_opens_the_dashboard_from_the_admin_index(live_server, page, tmp_path):
    a_month_of_activity()
    admin = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)

    shot = save_dashboard(page, live_server.url, admin.email, PASSWORD, tmp_path / "dash.png")

    assert page.url == f"{live_server.url}/admin/dashboard/"
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    assert charts.nth(0).locator("rect.bar").count() >= 10
    assert charts.nth(1).locator("rect.bar").count() >= 5
    assert charts.nth(2).locator("circle.point").count() == 3 * 30
    assert charts.nth(3).locator("rect.bar").count() >= 10
    legends = page.locator(".legend-item").all_text_contents()
    for label in ("auth", "download", "security", "failed logins", "other security events"):
        assert label in legends
    for label in ("queued", "sent", "failed", "granted", "refused"):
        assert label in legends
    assert "by day in UTC" in page.locator("#dashboard-period").inner_text()
    # Every chart fits the laptop's width: nothing to scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    png = shot.read_bytes()

    assert png.startswith(b"\x89PNG") and len(png) > 30_000
