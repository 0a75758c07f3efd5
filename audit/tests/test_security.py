"""Security events: refusals (403, another user's object), token misuse and brute force."""

import pytest

from audit.models import AuditLog
from audit.tests.helpers import actions_after, age_entries, last_entry_id, only_entry
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.accounts.tokens import email_verification_token, encode_uid, password_reset_token
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/"


def fail_login(client, email, ip="198.51.100.9"):
    response = client.post(LOGIN, {"email": email, "password": "wrong"}, REMOTE_ADDR=ip)
    assert response.status_code == 400


def test_a_403_is_recorded_as_permission_denied(api, user):
    mark = last_entry_id()

    response = api.get("/api/audit/logs/", REMOTE_ADDR="198.51.100.5")

    assert response.status_code == 403
    entry = only_entry(mark, "security.permission_denied")
    assert (entry.user_id, entry.user_email) == (user.pk, user.email)
    assert (entry.method, entry.path, entry.ip_address) == (
        "GET",
        "/api/audit/logs/",
        "198.51.100.5",
    )
    assert (entry.category, entry.success) == ("security", False)
    assert user.email in entry.description


def test_another_users_invoice_is_a_404_recorded_as_object_access_denied(api, user):
    invoice = InvoiceFactory()
    mark = last_entry_id()

    response = api.get(f"/api/invoices/{invoice.pk}/")

    assert response.status_code == 404
    assert invoice.number not in response.content.decode()
    entry = only_entry(mark, "security.object_access_denied")
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert (entry.user_id, entry.success) == (user.pk, False)
    assert entry.path == f"/api/invoices/{invoice.pk}/"


def test_acting_on_another_users_invoice_is_recorded_and_changes_nothing(api):
    invoice = InvoiceFactory()
    mark = last_entry_id()

    response = api.post(f"/api/invoices/{invoice.pk}/finalize/")

    assert response.status_code == 404
    assert actions_after(mark) == ["security.object_access_denied"]
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.DRAFT


def test_a_missing_object_is_a_plain_404_without_a_security_entry(api):
    mark = last_entry_id()

    response = api.get("/api/invoices/999999/")

    assert response.status_code == 404
    assert actions_after(mark) == []


def test_a_bad_email_verification_link_is_recorded_as_token_misuse(anon_client, user):
    mark = last_entry_id()

    response = anon_client.post(
        "/api/auth/verify-email/", {"uid": encode_uid(user), "token": "bogus-token-123"}
    )

    assert response.status_code == 400
    entry = only_entry(mark, "security.token_misuse")
    assert (entry.resource_type, entry.resource_id) == ("user", str(user.pk))
    assert entry.success is False
    assert "email verification" in entry.metadata["reason"]
    assert "bogus-token-123" not in str(entry.metadata) + entry.description + entry.path


def test_a_used_password_reset_link_is_recorded_as_token_misuse(anon_client, user):
    link = {"uid": encode_uid(user), "token": password_reset_token.make_token(user)}
    confirm = "/api/auth/password/reset/confirm/"
    assert (
        anon_client.post(confirm, {**link, "new_password": "first-New-pass-42"}).status_code == 204
    )
    mark = last_entry_id()

    response = anon_client.post(confirm, {**link, "new_password": "second-New-pass-42"})

    assert response.status_code == 400
    entry = only_entry(mark, "security.token_misuse")
    assert "password reset" in entry.metadata["reason"]
    assert actions_after(mark) == ["security.token_misuse"]


def test_a_link_for_an_unknown_user_is_recorded_as_token_misuse(anon_client):
    user = UserFactory(email_verified=False)
    link = {"uid": "OTk5OTk5", "token": email_verification_token.make_token(user)}
    mark = last_entry_id()

    response = anon_client.post("/api/auth/verify-email/", link)

    assert response.status_code == 400
    entry = only_entry(mark, "security.token_misuse")
    assert entry.resource_type == "account"


def test_a_failed_admin_login_is_recorded_without_the_password(client, user):
    mark = last_entry_id()

    response = client.post("/admin/login/", {"username": user.email, "password": "Hunter2-x"})

    assert response.status_code == 200
    entry = only_entry(mark, "user.login_failed")
    assert entry.metadata == {"attempted_email": user.email}
    assert entry.path == "/admin/login/"
    assert "Hunter2-x" not in str(entry.metadata) + entry.description


# Brute force


def test_repeated_failures_for_one_account_raise_one_brute_force_entry(anon_client, settings):
    settings.AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD = 3
    mark = last_entry_id()

    for attempt in range(6):
        fail_login(anon_client, "victim@example.com", ip=f"198.51.100.{attempt + 1}")

    entry = only_entry(mark, "security.brute_force_suspected")
    assert (entry.resource_type, entry.resource_id) == ("account", "victim@example.com")
    assert "3 failures for victim@example.com" in entry.description
    assert entry.success is False
    assert actions_after(mark).index("security.brute_force_suspected") == 3  # right after the 3rd


def test_repeated_failures_from_one_ip_raise_one_brute_force_entry(anon_client, settings):
    settings.AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD = 100
    settings.AUDIT_BRUTE_FORCE_IP_THRESHOLD = 4
    mark = last_entry_id()

    for attempt in range(7):
        fail_login(anon_client, f"user{attempt}@example.com", ip="203.0.113.66")

    entry = only_entry(mark, "security.brute_force_suspected")
    assert (entry.resource_type, entry.resource_id) == ("ip", "203.0.113.66")
    assert entry.ip_address == "203.0.113.66"


def test_failures_older_than_the_window_do_not_count(anon_client, settings):
    settings.AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD = 3
    settings.AUDIT_BRUTE_FORCE_WINDOW_SECONDS = 900
    fail_login(anon_client, "victim@example.com")
    fail_login(anon_client, "victim@example.com")
    age_entries(days=1)
    mark = last_entry_id()

    fail_login(anon_client, "victim@example.com")
    fail_login(anon_client, "victim@example.com")

    assert "security.brute_force_suspected" not in actions_after(mark)
    assert not AuditLog.objects.filter(action="security.brute_force_suspected").exists()
