"""The /api/auth/ endpoints, as the SPA and API clients use them (API.md, "Accounts")."""

import hashlib
import html
import io
import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils.http import urlsafe_base64_encode
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from audit.tests.helpers import last_entry_id, only_entry
from invoicegen.accounts.models import AuthToken, User
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.accounts.tokens import (
    email_verification_token,
    encode_uid,
    password_reset_token,
)

pytestmark = pytest.mark.django_db

SIGNUP = "/api/auth/signup/"
LOGIN = "/api/auth/login/"
LOGOUT = "/api/auth/logout/"
ME = "/api/auth/me/"
PASSWORD_CHANGE = "/api/auth/password/change/"
PASSWORD_RESET = "/api/auth/password/reset/"
PASSWORD_RESET_CONFIRM = "/api/auth/password/reset/confirm/"
VERIFY_EMAIL = "/api/auth/verify-email/"

SPA_BASE_URL = "https://spa.example.test"
NEW_PASSWORD = "a-brand-new-Passphrase-42"
SIGNUP_DATA = {"email": "alice@example.com", "password": PASSWORD, "name": "Alice Liddell"}


@pytest.fixture(autouse=True)
def _spa_base_url(settings):
    settings.APP_BASE_URL = SPA_BASE_URL


@pytest.fixture
def auth_rate_3_per_minute(monkeypatch):
    # DRF copies DEFAULT_THROTTLE_RATES into the class when it is defined: patch the copy.
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


def _log_in(client, email, password=PASSWORD, **extra):
    return client.post(LOGIN, {"email": email, "password": password}, **extra)


def _token_client(raw_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw_token}")
    return client


def _link_params(message, page):
    """The one SPA link to `page` in an email, checked identical in the plain body and the HTML
    alternative; answers its query as {"uid": ..., "token": ...}."""
    pattern = re.compile(re.escape(f"{SPA_BASE_URL}/{page}?") + r"[^\s\"'<>]+")
    in_plain = set(pattern.findall(message.body))
    [(html_body, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    in_html = {html.unescape(link) for link in pattern.findall(html_body)}
    assert len(in_plain) == 1, message.body
    assert in_html == in_plain, html_body
    query = parse_qs(urlsplit(in_plain.pop()).query, strict_parsing=True)
    assert sorted(query) == ["token", "uid"]
    return {key: values[0] for key, values in query.items()}


def _emails_with_link(page):
    return [message for message in mail.outbox if f"{SPA_BASE_URL}/{page}?" in message.body]


def _request_reset_link(client, user, capture):
    with capture(execute=True):
        response = client.post(PASSWORD_RESET, {"email": user.email})
    assert response.status_code == 202
    [message] = _emails_with_link("reset-password")
    assert message.to == [user.email]
    return _link_params(message, "reset-password")


# --- signup -----------------------------------------------------------------------------------


def test_signup_creates_an_unverified_user_and_answers_201_with_its_public_fields(anon_client):
    response = anon_client.post(SIGNUP, SIGNUP_DATA)

    assert response.status_code == 201
    user = User.objects.get()
    assert response.json() == {
        "id": user.pk,
        "email": "alice@example.com",
        "name": "Alice Liddell",
        "email_verified": False,
    }
    assert user.check_password(PASSWORD)
    assert PASSWORD not in user.password
    assert not user.is_staff
    assert not user.is_superuser


def test_signup_name_is_optional(anon_client):
    response = anon_client.post(SIGNUP, {"email": "bob@example.com", "password": PASSWORD})

    assert response.status_code == 201
    assert response.json()["name"] == ""


def test_signup_stores_the_email_lower_cased(anon_client):
    response = anon_client.post(SIGNUP, {**SIGNUP_DATA, "email": "Alice@Example.COM"})

    assert response.status_code == 201
    assert response.json()["email"] == "alice@example.com"
    assert User.objects.get().email == "alice@example.com"


def test_signup_emails_a_welcome_and_a_verification_link(
    anon_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = anon_client.post(SIGNUP, SIGNUP_DATA)

    assert response.status_code == 201
    assert len(mail.outbox) == 2
    assert all(message.to == ["alice@example.com"] for message in mail.outbox)
    [welcome] = [message for message in mail.outbox if "welcome" in message.subject.lower()]
    assert "Alice Liddell" in welcome.body
    [verification] = _emails_with_link("verify-email")
    assert verification is not welcome
    assert _link_params(verification, "verify-email")["uid"] == encode_uid(User.objects.get())


def test_signup_emails_are_sent_only_once_the_transaction_commits(
    anon_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = anon_client.post(SIGNUP, SIGNUP_DATA)

    assert response.status_code == 201
    assert mail.outbox == []
    assert len(callbacks) == 1  # the hand-over of both emails (core/outbox.py)
    for callback in callbacks:
        callback()
    assert len(mail.outbox) == 2


def test_signup_verification_link_verifies_the_email(
    anon_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        signup = anon_client.post(SIGNUP, SIGNUP_DATA)
    [message] = _emails_with_link("verify-email")
    link = _link_params(message, "verify-email")

    response = anon_client.post(VERIFY_EMAIL, link)

    assert response.status_code == 204
    assert User.objects.get(pk=signup.json()["id"]).email_verified
    login = _log_in(anon_client, "alice@example.com")
    assert login.json()["user"]["email_verified"] is True


def test_verification_link_works_only_once(anon_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        anon_client.post(SIGNUP, SIGNUP_DATA)
    link = _link_params(_emails_with_link("verify-email")[0], "verify-email")
    assert anon_client.post(VERIFY_EMAIL, link).status_code == 204

    again = anon_client.post(VERIFY_EMAIL, link)

    assert again.status_code == 400
    assert "token" in again.json()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"password": PASSWORD, "name": "No Email"}, "email"),
        ({"email": "", "password": PASSWORD}, "email"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "alice@", "password": PASSWORD}, "email"),
        ({"email": "alice@example.com"}, "password"),
        ({"email": "alice@example.com", "password": "Xk3#pq"}, "password"),  # too short
        ({"email": "alice@example.com", "password": "password123"}, "password"),  # common
        ({"email": "alice@example.com", "password": "4938271650394"}, "password"),  # numeric
        (
            {"email": "margaret.hamilton@example.com", "password": "margaret.hamilton"},
            "password",
        ),  # too similar to the email
        ({**SIGNUP_DATA, "name": "x" * 151}, "name"),
    ],
    ids=[
        "missing-email",
        "blank-email",
        "invalid-email",
        "email-without-domain",
        "missing-password",
        "short-password",
        "common-password",
        "numeric-password",
        "password-like-email",
        "name-too-long",
    ],
)
def test_signup_rejects_bad_input_naming_the_field(
    anon_client, django_capture_on_commit_callbacks, payload, field
):
    with django_capture_on_commit_callbacks(execute=True):
        response = anon_client.post(SIGNUP, payload)

    assert response.status_code == 400
    assert field in response.json()
    assert response.json()[field]
    assert not User.objects.exists()
    assert mail.outbox == []


def test_signup_accepts_a_name_of_150_characters(anon_client):
    response = anon_client.post(SIGNUP, {**SIGNUP_DATA, "name": "x" * 150})

    assert response.status_code == 201
    assert User.objects.get().name == "x" * 150


@pytest.mark.parametrize("email", ["taken@example.com", "Taken@Example.COM", " TAKEN@example.com"])
def test_signup_rejects_an_email_already_in_use_whatever_its_case(
    anon_client, django_capture_on_commit_callbacks, email
):
    existing = UserFactory(email="taken@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        response = anon_client.post(SIGNUP, {**SIGNUP_DATA, "email": email})

    assert response.status_code == 400
    assert "email" in response.json()
    assert list(User.objects.all()) == [existing]
    assert mail.outbox == []


# --- login ------------------------------------------------------------------------------------


def test_login_answers_a_token_and_the_user(anon_client):
    user = UserFactory(name="Ada", email_verified=False)

    response = _log_in(anon_client, user.email)

    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["token", "user"]
    assert isinstance(body["token"], str)
    assert len(body["token"]) >= 32
    assert body["user"] == {
        "id": user.pk,
        "email": user.email,
        "name": "Ada",
        "email_verified": False,
        "is_staff": False,
        "language": "en",
        "timezone": "UTC",
    }


def test_login_reports_staff_users_as_staff(anon_client):
    staff = UserFactory(is_staff=True)

    assert _log_in(anon_client, staff.email).json()["user"]["is_staff"] is True


def test_login_token_authenticates_requests(anon_client, user):
    token = _log_in(anon_client, user.email).json()["token"]

    response = _token_client(token).get(ME)

    assert response.status_code == 200
    assert response.json()["id"] == user.pk


def test_login_accepts_the_email_in_any_case(anon_client):
    user = UserFactory(email="grace@example.com")

    response = _log_in(anon_client, "Grace@EXAMPLE.com")

    assert response.status_code == 200
    assert response.json()["user"]["id"] == user.pk


def test_each_login_issues_a_new_token_and_all_of_them_work(anon_client, user):
    first = _log_in(anon_client, user.email).json()["token"]
    second = _log_in(anon_client, user.email).json()["token"]

    assert first != second
    assert _token_client(first).get(ME).status_code == 200
    assert _token_client(second).get(ME).status_code == 200


def test_only_the_sha256_of_a_token_is_stored(anon_client, user):
    token = _log_in(anon_client, user.email).json()["token"]

    stored = AuthToken.objects.get(user=user)
    assert stored.key_hash == hashlib.sha256(token.encode()).hexdigest()
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert stored.key_hash in dump.getvalue()
    assert token not in dump.getvalue()


def test_the_stored_hash_is_not_a_usable_token(anon_client, user):
    _log_in(anon_client, user.email)
    key_hash = AuthToken.objects.get(user=user).key_hash

    assert _token_client(key_hash).get(ME).status_code == 401


def test_login_with_a_wrong_password_or_an_unknown_email_gets_the_same_400(anon_client, user):
    wrong_password = _log_in(anon_client, user.email, "not-the-password")
    unknown_email = _log_in(anon_client, "nobody@example.com")

    assert wrong_password.status_code == 400
    assert unknown_email.status_code == 400
    assert wrong_password.json() == unknown_email.json()
    assert "token" not in wrong_password.json()
    assert not AuthToken.objects.exists()


def test_login_of_an_inactive_user_is_refused_like_wrong_credentials(anon_client):
    inactive = UserFactory(is_active=False)

    response = _log_in(anon_client, inactive.email)

    assert response.status_code == 400
    assert response.json() == _log_in(anon_client, "nobody@example.com").json()
    assert not AuthToken.objects.exists()


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, ["email", "password"]),
        ({"email": "not-an-email", "password": PASSWORD}, ["email"]),
        ({"email": "a@example.com"}, ["password"]),
    ],
    ids=["empty", "invalid-email", "missing-password"],
)
def test_login_rejects_bad_input_naming_the_field(anon_client, payload, fields):
    response = anon_client.post(LOGIN, payload)

    assert response.status_code == 400
    assert sorted(response.json()) == fields


# --- token authentication ---------------------------------------------------------------------


def test_an_unknown_token_gets_401():
    assert _token_client("no-such-token").get(ME).status_code == 401


def test_the_token_of_a_deactivated_user_gets_401(user, client_for):
    api = client_for(user)
    user.is_active = False
    user.save()

    assert api.get(ME).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", LOGOUT), ("get", ME), ("patch", ME), ("post", PASSWORD_CHANGE)],
)
def test_anonymous_requests_to_authenticated_endpoints_get_401(anon_client, method, path):
    response = getattr(anon_client, method)(path, {})

    assert response.status_code == 401
    assert "detail" in response.json()


# --- logout -----------------------------------------------------------------------------------


def test_logout_revokes_the_token(anon_client, user):
    token = _log_in(anon_client, user.email).json()["token"]
    api = _token_client(token)

    response = api.post(LOGOUT)

    assert response.status_code == 204
    assert api.get(ME).status_code == 401
    assert not AuthToken.objects.filter(user=user).exists()


def test_logout_keeps_the_users_other_tokens(user, client_for):
    phone, laptop = client_for(user), client_for(user)

    assert phone.post(LOGOUT).status_code == 204

    assert laptop.get(ME).status_code == 200


# --- me ---------------------------------------------------------------------------------------


def test_me_answers_the_user(api, user):
    response = api.get(ME)

    assert response.status_code == 200
    assert response.json() == {
        "id": user.pk,
        "email": user.email,
        "name": user.name,
        "email_verified": True,
        "is_staff": False,
        "language": "en",
        "timezone": "UTC",
    }


def test_me_patch_sets_the_language_and_time_zone_audited(api, user):
    mark = last_entry_id()

    response = api.patch(ME, {"language": "de", "timezone": "Europe/Berlin"}, format="json")

    assert response.status_code == 200
    assert (response.json()["language"], response.json()["timezone"]) == ("de", "Europe/Berlin")
    user.refresh_from_db()
    assert (user.language, user.timezone, user.name) == ("de", "Europe/Berlin", user.name)
    assert only_entry(mark, "user.profile_updated").user_id == user.pk


@pytest.mark.parametrize(
    "field, value",
    [
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "../../etc/passwd"),
        ("timezone", "europe/paris"),
        ("timezone", ""),
        ("timezone", "x" * 65),
        ("language", "xx"),
        ("language", "de-DE"),
        ("language", None),
    ],
)
def test_me_patch_refuses_an_unknown_language_or_time_zone(api, user, field, value):
    response = api.patch(ME, {field: value}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    user.refresh_from_db()
    assert (user.language, user.timezone) == ("en", "UTC")


def test_me_patch_updates_the_name(api, user):
    response = api.patch(ME, {"name": "New Name"})

    assert response.status_code == 200
    assert response.json()["name"] == "New Name"
    user.refresh_from_db()
    assert user.name == "New Name"


def test_me_patch_ignores_email_verification_and_staff_fields(api, user):
    original_email = user.email

    response = api.patch(
        ME,
        {
            "name": "Mallory",
            "email": "other@example.com",
            "is_staff": True,
            "email_verified": False,
        },
    )

    assert response.status_code == 200
    assert response.json()["email"] == original_email
    assert response.json()["is_staff"] is False
    user.refresh_from_db()
    assert user.name == "Mallory"
    assert user.email == original_email
    assert not user.is_staff
    assert user.email_verified


def test_me_patch_rejects_a_name_longer_than_150(api, user):
    original_name = user.name

    response = api.patch(ME, {"name": "x" * 151})

    assert response.status_code == 400
    assert "name" in response.json()
    user.refresh_from_db()
    assert user.name == original_name


def test_me_does_not_accept_put(api):
    assert api.put(ME, {"name": "Whole"}).status_code == 405


# --- password change --------------------------------------------------------------------------


def test_password_change_sets_the_new_password(anon_client, api, user):
    response = api.post(PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD})

    assert response.status_code == 204
    assert _log_in(anon_client, user.email, NEW_PASSWORD).status_code == 200
    assert _log_in(anon_client, user.email, PASSWORD).status_code == 400


def test_password_change_keeps_the_requesting_token_and_revokes_the_others(user, client_for):
    current, stolen = client_for(user), client_for(user)
    someone_else = client_for(UserFactory())

    response = current.post(
        PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 204
    assert current.get(ME).status_code == 200
    assert stolen.get(ME).status_code == 401
    assert someone_else.get(ME).status_code == 200


def test_password_change_with_a_wrong_old_password_is_refused(user, client_for):
    api, other_device = client_for(user), client_for(user)

    response = api.post(
        PASSWORD_CHANGE, {"old_password": "not-the-password", "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 400
    assert "old_password" in response.json()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert other_device.get(ME).status_code == 200


@pytest.mark.parametrize("weak", ["Xk3#pq", "password123", "4938271650394"])
def test_password_change_to_a_weak_password_is_refused(user, client_for, weak):
    api, other_device = client_for(user), client_for(user)

    response = api.post(PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": weak})

    assert response.status_code == 400
    assert "new_password" in response.json()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert other_device.get(ME).status_code == 200


def test_password_change_requires_both_passwords(api):
    response = api.post(PASSWORD_CHANGE, {})

    assert response.status_code == 400
    assert sorted(response.json()) == ["new_password", "old_password"]


# --- password reset ---------------------------------------------------------------------------


def test_password_reset_emails_a_link_to_an_existing_user(
    anon_client, user, django_capture_on_commit_callbacks
):
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)

    assert len(mail.outbox) == 1
    assert link["uid"] == encode_uid(user)


def test_password_reset_answers_the_same_for_an_unknown_email_and_sends_nothing(
    anon_client, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        known = anon_client.post(PASSWORD_RESET, {"email": user.email})
    assert len(mail.outbox) == 1

    with django_capture_on_commit_callbacks(execute=True):
        unknown = anon_client.post(PASSWORD_RESET, {"email": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert len(mail.outbox) == 1


def test_password_reset_finds_the_user_whatever_the_email_case(
    anon_client, django_capture_on_commit_callbacks
):
    user = UserFactory(email="grace@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        response = anon_client.post(PASSWORD_RESET, {"email": "GRACE@Example.com"})

    assert response.status_code == 202
    [message] = mail.outbox
    assert message.to == [user.email]


def test_password_reset_sends_nothing_to_an_inactive_user(
    anon_client, django_capture_on_commit_callbacks
):
    inactive = UserFactory(is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        response = anon_client.post(PASSWORD_RESET, {"email": inactive.email})

    assert response.status_code == 202
    assert mail.outbox == []


@pytest.mark.parametrize("payload", [{}, {"email": "not-an-email"}], ids=["missing", "invalid"])
def test_password_reset_rejects_a_missing_or_invalid_email(anon_client, payload):
    response = anon_client.post(PASSWORD_RESET, payload)

    assert response.status_code == 400
    assert "email" in response.json()


def test_password_reset_link_sets_a_new_password(
    anon_client, user, django_capture_on_commit_callbacks
):
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)

    response = anon_client.post(PASSWORD_RESET_CONFIRM, {**link, "new_password": NEW_PASSWORD})

    assert response.status_code == 204
    assert _log_in(anon_client, user.email, NEW_PASSWORD).status_code == 200
    assert _log_in(anon_client, user.email, PASSWORD).status_code == 400


def test_password_reset_link_works_only_once(anon_client, user, django_capture_on_commit_callbacks):
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)
    assert (
        anon_client.post(PASSWORD_RESET_CONFIRM, {**link, "new_password": NEW_PASSWORD})
    ).status_code == 204

    again = anon_client.post(
        PASSWORD_RESET_CONFIRM, {**link, "new_password": "yet-another-Passphrase-7"}
    )

    assert again.status_code == 400
    assert "token" in again.json()
    assert _log_in(anon_client, user.email, NEW_PASSWORD).status_code == 200


def test_password_reset_revokes_every_token_of_the_user(
    anon_client, user, client_for, django_capture_on_commit_callbacks
):
    api = client_for(user)
    someone_else = client_for(UserFactory())
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)

    response = anon_client.post(PASSWORD_RESET_CONFIRM, {**link, "new_password": NEW_PASSWORD})

    assert response.status_code == 204
    assert api.get(ME).status_code == 401
    assert someone_else.get(ME).status_code == 200


def test_password_reset_to_a_weak_password_is_refused_and_the_link_stays_usable(
    anon_client, user, django_capture_on_commit_callbacks
):
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)

    weak = anon_client.post(PASSWORD_RESET_CONFIRM, {**link, "new_password": "password123"})

    assert weak.status_code == 400
    assert "new_password" in weak.json()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    strong = anon_client.post(PASSWORD_RESET_CONFIRM, {**link, "new_password": NEW_PASSWORD})
    assert strong.status_code == 204


def test_password_reset_link_expires_after_password_reset_timeout(
    anon_client, user, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.PASSWORD_RESET_TIMEOUT = 3600
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)
    payload = {**link, "new_password": NEW_PASSWORD}

    with monkeypatch.context() as later:
        later.setattr(password_reset_token, "_now", lambda: datetime.now() + timedelta(hours=2))
        expired = anon_client.post(PASSWORD_RESET_CONFIRM, payload)

    assert expired.status_code == 400
    assert "token" in expired.json()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    # The same link, still inside its lifetime, works: the 400 above came from the clock.
    assert anon_client.post(PASSWORD_RESET_CONFIRM, payload).status_code == 204


def _b64(text):
    return urlsafe_base64_encode(text.encode())


def _tampered(link, other_user):
    token = link["token"]
    flipped_last = token[:-1] + ("a" if token[-1] != "a" else "b")
    return {
        "token-flipped": {**link, "token": flipped_last},
        "token-garbage": {**link, "token": "not-a-token"},
        "token-of-wrong-shape": {**link, "token": "zz-zz-zz"},
        "uid-of-another-user": {**link, "uid": encode_uid(other_user)},
        "uid-garbage": {**link, "uid": "!!!"},
        "uid-not-numeric": {**link, "uid": _b64("abc")},
        "uid-negative": {**link, "uid": _b64("-1")},
        "uid-unknown": {**link, "uid": _b64("987654321")},
        "uid-huge": {**link, "uid": _b64("9" * 40)},
        "uid-unicode-digit": {**link, "uid": _b64("²")},
    }


TAMPERINGS = [
    "token-flipped",
    "token-garbage",
    "token-of-wrong-shape",
    "uid-of-another-user",
    "uid-garbage",
    "uid-not-numeric",
    "uid-negative",
    "uid-unknown",
    "uid-huge",
    "uid-unicode-digit",
]


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_password_reset_with_a_tampered_link_is_refused(
    anon_client, user, django_capture_on_commit_callbacks, tampering
):
    link = _request_reset_link(anon_client, user, django_capture_on_commit_callbacks)
    payload = {**_tampered(link, UserFactory())[tampering], "new_password": NEW_PASSWORD}

    response = anon_client.post(PASSWORD_RESET_CONFIRM, payload)

    assert response.status_code == 400
    assert "token" in response.json()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_a_verification_link_does_not_reset_the_password(anon_client, user):
    verification = {"uid": encode_uid(user), "token": email_verification_token.make_token(user)}

    response = anon_client.post(
        PASSWORD_RESET_CONFIRM, {**verification, "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 400
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, ["new_password", "token", "uid"]),
        ({"token": "x-y", "new_password": NEW_PASSWORD}, ["uid"]),
        ({"uid": "MQ", "new_password": NEW_PASSWORD}, ["token"]),
        ({"uid": "MQ", "token": "x-y"}, ["new_password"]),
    ],
    ids=["empty", "missing-uid", "missing-token", "missing-new-password"],
)
def test_password_reset_confirm_rejects_missing_fields(anon_client, payload, fields):
    response = anon_client.post(PASSWORD_RESET_CONFIRM, payload)

    assert response.status_code == 400
    assert sorted(response.json()) == fields


# --- email verification -----------------------------------------------------------------------


@pytest.fixture
def unverified_user():
    return UserFactory(email_verified=False)


def test_verify_email_verifies_the_user_of_the_link(anon_client, unverified_user):
    link = {
        "uid": encode_uid(unverified_user),
        "token": email_verification_token.make_token(unverified_user),
    }

    assert anon_client.post(VERIFY_EMAIL, link).status_code == 204

    unverified_user.refresh_from_db()
    assert unverified_user.email_verified


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_verify_email_with_a_tampered_link_is_refused(anon_client, unverified_user, tampering):
    link = {
        "uid": encode_uid(unverified_user),
        "token": email_verification_token.make_token(unverified_user),
    }
    other = UserFactory(email_verified=False)

    response = anon_client.post(VERIFY_EMAIL, _tampered(link, other)[tampering])

    assert response.status_code == 400
    assert "token" in response.json()
    unverified_user.refresh_from_db()
    other.refresh_from_db()
    assert not unverified_user.email_verified
    assert not other.email_verified


def test_a_password_reset_link_does_not_verify_the_email(anon_client, unverified_user):
    reset = {
        "uid": encode_uid(unverified_user),
        "token": password_reset_token.make_token(unverified_user),
    }

    assert anon_client.post(VERIFY_EMAIL, reset).status_code == 400

    unverified_user.refresh_from_db()
    assert not unverified_user.email_verified


@pytest.mark.parametrize(
    ("payload", "fields"),
    [({}, ["token", "uid"]), ({"token": "x-y"}, ["uid"]), ({"uid": "MQ"}, ["token"])],
    ids=["empty", "missing-uid", "missing-token"],
)
def test_verify_email_rejects_missing_fields(anon_client, payload, fields):
    response = anon_client.post(VERIFY_EMAIL, payload)

    assert response.status_code == 400
    assert sorted(response.json()) == fields


# --- URLs -------------------------------------------------------------------------------------

# What an anonymous request with an empty JSON body gets from each endpoint's own view.
ANONYMOUS_EMPTY_ANSWERS = [
    ("post", SIGNUP, 400),
    ("post", LOGIN, 400),
    ("post", LOGOUT, 401),
    ("get", ME, 401),
    ("post", PASSWORD_CHANGE, 401),
    ("post", PASSWORD_RESET, 400),
    ("post", PASSWORD_RESET_CONFIRM, 400),
    ("post", VERIFY_EMAIL, 400),
]


@pytest.mark.parametrize("trailing_slash", [True, False], ids=["slash", "no-slash"])
@pytest.mark.parametrize(("method", "path", "status"), ANONYMOUS_EMPTY_ANSWERS)
def test_every_endpoint_answers_with_and_without_trailing_slash(
    anon_client, method, path, status, trailing_slash
):
    url = path if trailing_slash else path.rstrip("/")

    response = getattr(anon_client, method)(url, {})

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"


def test_login_and_me_work_without_trailing_slash(anon_client, user):
    login = anon_client.post(LOGIN.rstrip("/"), {"email": user.email, "password": PASSWORD})
    assert login.status_code == 200

    response = _token_client(login.json()["token"]).patch(ME.rstrip("/"), {"name": "Slashless"})

    assert response.status_code == 200
    assert response.json()["name"] == "Slashless"


# --- throttling -------------------------------------------------------------------------------


def test_the_fourth_login_from_one_ip_within_the_rate_gets_429_with_retry_after(
    anon_client, user, auth_rate_3_per_minute
):
    for _ in range(3):
        assert _log_in(anon_client, user.email, REMOTE_ADDR="203.0.113.7").status_code == 200

    throttled = _log_in(anon_client, user.email, REMOTE_ADDR="203.0.113.7")

    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert "detail" in throttled.json()
    assert _log_in(anon_client, user.email, REMOTE_ADDR="198.51.100.9").status_code == 200


def test_failed_logins_count_towards_the_throttle(anon_client, user, auth_rate_3_per_minute):
    ip = {"REMOTE_ADDR": "203.0.113.7"}
    failures = [_log_in(anon_client, user.email, "guess", **ip).status_code for _ in range(3)]

    assert failures == [400, 400, 400]
    assert _log_in(anon_client, user.email, **ip).status_code == 429


@pytest.mark.parametrize(
    "path", [SIGNUP, LOGIN, PASSWORD_RESET, PASSWORD_RESET_CONFIRM, VERIFY_EMAIL]
)
def test_anonymous_auth_endpoints_are_throttled_per_ip(anon_client, auth_rate_3_per_minute, path):
    for _ in range(3):
        assert anon_client.post(path, {}, REMOTE_ADDR="203.0.113.7").status_code == 400

    assert anon_client.post(path, {}, REMOTE_ADDR="203.0.113.7").status_code == 429
    assert anon_client.post(path, {}, REMOTE_ADDR="198.51.100.9").status_code == 400


def test_drf_trusts_exactly_the_configured_number_of_proxies(settings):
    # DRF's default (None) would take a client's own X-Forwarded-For as its identity.
    assert api_settings.NUM_PROXIES is not None
    assert api_settings.NUM_PROXIES == settings.TRUSTED_PROXY_COUNT


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle_without_trusted_proxies(
    anon_client, user, settings, auth_rate_3_per_minute
):
    settings.TRUSTED_PROXY_COUNT = 0
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}

    statuses = [
        _log_in(
            anon_client, user.email, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}"
        ).status_code
        for n in range(1, 5)
    ]

    assert statuses == [200, 200, 200, 429]


def test_behind_one_trusted_proxy_the_forwarded_client_ip_is_throttled(
    anon_client, user, settings, auth_rate_3_per_minute
):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    def log_in_via_proxy(client_ip):
        return _log_in(
            anon_client, user.email, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_ip
        ).status_code

    assert [log_in_via_proxy("192.0.2.1") for _ in range(4)] == [200, 200, 200, 429]
    assert log_in_via_proxy("192.0.2.2") == 200


# --- session authentication -------------------------------------------------------------------

CSRF_SECRET = "a" * 32


@pytest.fixture
def session_client(user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _with_csrf(client):
    client.cookies["csrftoken"] = CSRF_SECRET
    return {"HTTP_X_CSRFTOKEN": CSRF_SECRET}


def test_a_session_login_can_read_me(session_client, user):
    response = session_client.get(ME)

    assert response.status_code == 200
    assert response.json()["id"] == user.pk


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", LOGOUT, {}),
        ("patch", ME, {"name": "Forged"}),
        ("post", PASSWORD_CHANGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD}),
    ],
)
def test_a_session_write_without_csrf_token_is_refused(session_client, user, method, path, payload):
    original_name = user.name

    response = getattr(session_client, method)(path, payload)

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    user.refresh_from_db()
    assert user.name == original_name
    assert user.check_password(PASSWORD)
    assert session_client.get(ME).status_code == 200


def test_a_session_write_with_csrf_token_is_accepted(session_client, user):
    response = session_client.patch(ME, {"name": "Sessioned"}, **_with_csrf(session_client))

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.name == "Sessioned"


def test_logout_ends_a_session_login(session_client):
    response = session_client.post(LOGOUT, **_with_csrf(session_client))

    assert response.status_code == 204
    assert session_client.get(ME).status_code == 401


def test_password_change_keeps_the_current_session_logged_in(session_client, user):
    response = session_client.post(
        PASSWORD_CHANGE,
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        **_with_csrf(session_client),
    )

    assert response.status_code == 204
    assert session_client.get(ME).status_code == 200
