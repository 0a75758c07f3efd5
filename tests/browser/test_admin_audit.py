"""A staff member works the audit trail in a real browser: log in, filter, open, prune."""

import datetime

import pytest
from django.db import connection

from audit import triggers
from audit.archive import archive_ended_months
from audit.models import AuditLog
from audit.services import log, seal_audit_log
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _age_entries(ids, days):
    """Entries written `days` ago (the database sets created_at; a superuser may move it)."""
    with connection.cursor() as cursor:
        for sql in triggers.uninstall_sql(connection.vendor):
            cursor.execute(sql)
        when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)
        for row_id in ids:
            cursor.execute(
                "UPDATE audit_auditlog SET created_at = %s WHERE id = %s", [when, row_id]
            )
        for sql in triggers.install_sql(connection.vendor):
            cursor.execute(sql)


def test_staff_filters_opens_and_prunes_the_audit_log(live_server, page, settings):
    old = [log("invoice.sent", target=("invoice", n), metadata={"n": n}).id for n in (1, 2, 3)]
    _age_entries(old, days=400)
    seal_audit_log()
    archive_ended_months()  # as the beat does nightly: the admin's cleanup takes archived months
    log("user.login_failed", target=("account", "mallory@example.com"), success=False)
    admin = UserFactory(email="root@example.com", is_staff=True, is_superuser=True)

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", admin.email)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/audit/auditlog/")
    assert page.locator("#result_list tbody tr").count() >= 4

    with page.expect_navigation():
        page.click("#changelist-filter a:text-is('invoice.*')")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    assert "user.login_failed" not in page.locator("#result_list").inner_text()

    with page.expect_navigation():
        rows.first.locator("th a").click()
    assert "invoice.sent" in page.content()
    assert "history of this resource" in page.content()

    page.goto(f"{live_server.url}/admin/audit/auditlog/cleanup/")
    page.fill("#id_days", "365")
    with page.expect_navigation():
        page.click("input[name=preview]")
    assert "3 entries older than" in page.locator("#cleanup-preview").inner_text()
    assert AuditLog.objects.filter(id__in=old).count() == 3  # a dry run deletes nothing

    with page.expect_navigation():
        page.click("input[name=confirm]")
    assert "Deleted 3 audit entries" in page.locator(".messagelist").inner_text()
    assert not AuditLog.objects.filter(id__in=old).exists()
