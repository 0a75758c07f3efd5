"""Account lockout after repeated failed logins, on the API login and the admin's alike."""

import re

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditLog
from audit.tests.helpers import actions_after, age_entries, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.models import AuthToken
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/"
ADMIN_LOGIN = "/admin/login/"
WRONG = "not-the-password"
LOCKED_MESSAGE = "Too many failed logins for this account."


@pytest.fixture(autouse=True)
def _three_failures_lock_for_15_minutes(settings):
    settings.AUTH_LOCKOUT_THRESHOLD = 3
    settings.AUTH_LOCKOUT_MINUTES = 15


def api_login(email, password=WRONG, ip="198.51.100.7") -> str:
    response = APIClient().post(LOGIN, {"email": email, "password": password}, REMOTE_ADDR=ip)
    if response.status_code == 429:
        assert response.json()["detail"].startswith(LOCKED_MESSAGE)
        assert 0 < int(response["Retry-After"]) <= settings.AUTH_LOCKOUT_MINUTES * 60
    return {200: "in", 400: "refused", 429: "locked"}[response.status_code]


def admin_login(email, password=WRONG, ip="198.51.100.7") -> str:
    response = Client().post(ADMIN_LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)
    if response.status_code == 302:
        return "in"
    assert response.status_code == 200
    if LOCKED_MESSAGE in response.text:
        minutes = re.search(r"Try again in (\d+) minute\(s\)\.", response.text).group(1)
        assert 0 < int(minutes) <= settings.AUTH_LOCKOUT_MINUTES
        return "locked"
    assert "Please enter the correct email" in response.text
    return "refused"


@pytest.fixture(params=[api_login, admin_login], ids=["api", "admin"])
def log_in(request):
    return request.param


@pytest.fixture
def owner():
    """An account that may use both the API and the admin."""
    return UserFactory(email="owner@example.com", is_staff=True, is_superuser=True)


def lock_out(log_in, email) -> None:
    assert [log_in(email) for _ in range(3)] == ["refused", "refused", "locked"]


def test_the_failure_that_reaches_the_threshold_locks_the_account(log_in, owner):
    outcomes = [log_in(owner.email) for _ in range(3)]

    assert outcomes == ["refused", "refused", "locked"]


def test_the_right_password_is_refused_during_a_lockout(log_in, owner):
    lock_out(log_in, owner.email)

    assert log_in(owner.email, PASSWORD) == "locked"
    assert not AuthToken.objects.exists()


def test_failures_on_the_api_and_on_the_admin_add_up():
    owner = UserFactory(is_staff=True)

    assert [api_login(owner.email), admin_login(owner.email)] == ["refused", "refused"]

    assert admin_login(owner.email) == "locked"
    assert api_login(owner.email, PASSWORD) == "locked"


def test_failures_from_many_ips_lock_the_account(log_in, owner):
    outcomes = [log_in(owner.email, ip=f"203.0.113.{n}") for n in range(1, 4)]

    assert outcomes == ["refused", "refused", "locked"]
    assert log_in(owner.email, PASSWORD, ip="192.0.2.1") == "locked"


def test_the_email_is_locked_whatever_its_case(log_in, owner):
    variants = ["OWNER@example.com", "Owner@Example.com", "owner@EXAMPLE.COM"]

    assert [log_in(email) for email in variants] == ["refused", "refused", "locked"]
    assert log_in(owner.email, PASSWORD) == "locked"


def test_a_lockout_is_of_one_email_only(log_in, owner):
    other = UserFactory(is_staff=True)
    lock_out(log_in, owner.email)

    assert log_in(other.email, PASSWORD) == "in"


def test_the_lockout_ends_after_auth_lockout_minutes(log_in, owner):
    lock_out(log_in, owner.email)

    age_entries(minutes=14)
    assert log_in(owner.email, PASSWORD) == "locked"

    age_entries(minutes=16)
    assert log_in(owner.email, PASSWORD) == "in"


def test_the_lockout_follows_the_settings(log_in, owner, settings):
    settings.AUTH_LOCKOUT_THRESHOLD = 5
    settings.AUTH_LOCKOUT_MINUTES = 60

    assert [log_in(owner.email) for _ in range(5)] == ["refused"] * 4 + ["locked"]
    age_entries(minutes=59)
    assert log_in(owner.email, PASSWORD) == "locked"
    age_entries(minutes=61)
    assert log_in(owner.email, PASSWORD) == "in"


def test_failures_older_than_the_window_do_not_count(log_in, owner):
    assert [log_in(owner.email) for _ in range(2)] == ["refused", "refused"]
    age_entries(minutes=16)

    assert [log_in(owner.email) for _ in range(2)] == ["refused", "refused"]


def test_attempts_during_a_lockout_neither_extend_it_nor_count_towards_the_next(log_in, owner):
    lock_out(log_in, owner.email)
    lockout = AuditLog.objects.get(action="security.account_locked")
    age_entries(minutes=10)
    assert [log_in(owner.email) for _ in range(3)] == ["locked"] * 3

    age_entries(minutes=16, through_id=lockout.id)  # the lockout is over, not the attempts

    assert log_in(owner.email) == "refused"
    assert log_in(owner.email, PASSWORD) == "in"


# --- the trail -----------------------------------------------------------------------------


def test_a_lockout_is_audited_once_and_refused_attempts_as_login_locked(log_in, owner):
    mark = last_entry_id()

    outcomes = [log_in(owner.email, f"guess-{n}") for n in range(5)]

    assert outcomes == ["refused", "refused", "locked", "locked", "locked"]
    assert actions_after(mark) == [
        "user.login_failed",
        "user.login_failed",
        "user.login_failed",
        "security.account_locked",
        "user.login_locked",
        "user.login_locked",
    ]
    entry = only_entry(mark, "security.account_locked")
    assert (entry.resource_type, entry.resource_id) == ("account", owner.email)
    assert entry.metadata == {"attempted_email": owner.email, "failures": 3, "minutes": 15}
    assert (entry.category, entry.success) == ("security", False)
    assert entry.description == f"Logins for {owner.email} locked for 15 min after 3 failures"
    assert entry.ip_address == "198.51.100.7"
    for row in AuditLog.objects.filter(id__gt=mark):
        assert "guess-" not in str(row.metadata) + row.description


def test_the_right_password_during_a_lockout_is_audited_as_login_locked(log_in, owner):
    lock_out(log_in, owner.email)
    mark = last_entry_id()

    log_in(owner.email, PASSWORD)

    assert actions_after(mark) == ["user.login_locked"]
    entry = only_entry(mark, "user.login_locked")
    assert entry.metadata == {"attempted_email": owner.email}
    assert entry.category == "auth"
    assert entry.description == f"Login for {owner.email} refused: locked out"


def test_a_new_lockout_after_the_first_ended_is_audited_again(log_in, owner):
    lock_out(log_in, owner.email)
    age_entries(minutes=16)

    lock_out(log_in, owner.email)

    assert AuditLog.objects.filter(action="security.account_locked").count() == 2


def test_lockouts_are_listed_among_the_security_events(log_in, owner, client_for):
    lock_out(log_in, owner.email)
    log_in(owner.email, PASSWORD)

    response = client_for(UserFactory(is_staff=True)).get("/api/audit/security-events/")

    assert response.status_code == 200
    actions = [entry["action"] for entry in response.json()["results"]]
    assert actions[:2] == ["user.login_locked", "security.account_locked"]


# --- the owner's email -----------------------------------------------------------------------


def test_the_owner_is_emailed_once_per_lockout_and_no_secret_in_it(
    log_in, owner, django_capture_on_commit_callbacks
):
    guesses = [f"Guess-{n}-secret" for n in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        for guess in guesses:
            log_in(owner.email, guess)
        log_in(owner.email, PASSWORD)

    [message] = mail.outbox
    assert message.to == [owner.email]
    assert message.subject == "Logins to your invoicegen account are locked for 15 minutes"
    assert "locked logins to it for 15 minutes" in message.body
    [(html, _)] = message.alternatives
    row = EmailLog.objects.get(template_name="account_locked")
    assert (row.user, row.resource_type, row.resource_id) == (owner, "user", str(owner.pk))
    everything = message.subject + message.body + html + str(row.context)
    for secret in [*guesses, PASSWORD, owner.password]:
        assert secret not in everything


def test_each_lockout_emails_the_owner_again(log_in, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        lock_out(log_in, owner.email)
    age_entries(minutes=16)

    with django_capture_on_commit_callbacks(execute=True):
        lock_out(log_in, owner.email)

    assert [message.to for message in mail.outbox] == [[owner.email], [owner.email]]


def test_an_unknown_email_is_locked_out_alike_and_nobody_is_emailed(
    log_in, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        known = [log_in(owner.email, ip="198.51.100.1") for _ in range(4)]
        unknown = [log_in("nobody@example.com", ip="198.51.100.2") for _ in range(4)]

    assert known == unknown == ["refused", "refused", "locked", "locked"]
    locked = AuditLog.objects.filter(action="security.account_locked")
    assert sorted(locked.values_list("resource_id", flat=True)) == [
        "nobody@example.com",
        owner.email,
    ]
    assert [message.to for message in mail.outbox] == [[owner.email]]


def test_the_api_answers_a_lockout_of_a_known_and_an_unknown_email_alike(owner):
    def answers(email):
        client = APIClient()
        return [client.post(LOGIN, {"email": email, "password": WRONG}) for _ in range(3)]

    known, unknown = answers(owner.email), answers("nobody@example.com")

    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [400, 400, 429]
    assert [r.json() for r in known] == [r.json() for r in unknown]
    assert known[-1]["Retry-After"] == unknown[-1]["Retry-After"]


def test_an_inactive_account_is_locked_but_not_emailed(log_in, django_capture_on_commit_callbacks):
    inactive = UserFactory(is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        lock_out(log_in, inactive.email)

    assert AuditLog.objects.filter(action="security.account_locked").count() == 1
    assert mail.outbox == []


# --- racing failures (PostgreSQL: SQLite serialises every writer anyway) ---------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_failures_reaching_the_threshold_together_start_one_lockout(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers")
    owner = UserFactory()
    api_login(owner.email)

    outcomes = race(lambda: api_login(owner.email), 8)

    assert set(outcomes) <= {"refused", "locked"}
    assert "locked" in outcomes
    assert AuditLog.objects.filter(action="security.account_locked").count() == 1
    assert EmailLog.objects.filter(template_name="account_locked").count() == 1
