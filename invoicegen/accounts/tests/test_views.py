"""The pages the emailed verification and reset links open when no SPA answers them."""

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils.http import urlsafe_base64_encode
from rest_framework.throttling import SimpleRateThrottle

from audit.models import AuditLog
from invoicegen.accounts.models import User
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.accounts.tokens import email_verification_token, encode_uid, password_reset_token

pytestmark = pytest.mark.django_db

BASE_URL = "http://testserver"
NEW_PASSWORD = "a-brand-new-Passphrase-42"
INVALID = "This link is not valid"


@pytest.fixture(autouse=True)
def _links_to_this_server(settings):
    settings.APP_BASE_URL = BASE_URL


def _emailed_link(page: str) -> str:
    """The path and query of the one link to `page` in the emails sent, as a browser opens it."""
    pattern = re.compile(re.escape(f"{BASE_URL}/{page}?") + r"[^\s\"'<>]+")
    [url] = {url for message in mail.outbox for url in pattern.findall(message.body)}
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _signed_up_link(client, capture) -> str:
    with capture(execute=True):
        response = _api_post(
            client, "/api/auth/signup/", {"email": "alice@example.com", "password": PASSWORD}
        )
    assert response.status_code == 201
    return _emailed_link("verify-email")


def _reset_link(client, user, capture) -> str:
    with capture(execute=True):
        response = _api_post(client, "/api/auth/password/reset/", {"email": user.email})
    assert response.status_code == 202
    return _emailed_link("reset-password")


def _api_post(client, path: str, data: dict):
    return client.post(path, data, content_type="application/json")


def _entries(action: str):
    return list(AuditLog.objects.filter(action=action))


def _new_password(link: str, first=NEW_PASSWORD, second=NEW_PASSWORD, client=None):
    data = {"new_password1": first, "new_password2": second}
    return (client or Client()).post(link, data)


# --- email verification -----------------------------------------------------------------------


def test_the_emailed_verification_link_verifies_the_email_on_the_pages_button(
    django_capture_on_commit_callbacks,
):
    client = Client()
    link = _signed_up_link(client, django_capture_on_commit_callbacks)

    page = client.get(link)

    assert page.status_code == 200
    assert 'id="verify"' in page.text
    assert not User.objects.get().email_verified  # opening the link changes nothing
    assert _entries("user.email_verified") == []

    done = client.post(link)

    assert done.status_code == 200
    assert "Email verified" in done.text
    user = User.objects.get()
    assert user.email_verified
    [entry] = _entries("user.email_verified")
    assert (entry.user_id, entry.origin, entry.success) == (user.pk, "web", True)
    assert link.split("token=")[1] not in entry.path  # the trail keeps the path redacted


def test_a_used_verification_link_answers_the_invalid_link_page(
    django_capture_on_commit_callbacks,
):
    client = Client()
    link = _signed_up_link(client, django_capture_on_commit_callbacks)
    assert client.post(link).status_code == 200

    for response in (client.get(link), client.post(link)):
        assert response.status_code == 400
        assert INVALID in response.text
    assert len(_entries("user.email_verified")) == 1


def test_an_expired_verification_link_answers_the_invalid_link_page(settings, monkeypatch):
    settings.PASSWORD_RESET_TIMEOUT = 3600
    user = UserFactory(email_verified=False)
    link = f"/verify-email?uid={encode_uid(user)}&token={email_verification_token.make_token(user)}"
    later = lambda: datetime.now() + timedelta(hours=2)  # noqa: E731
    monkeypatch.setattr(email_verification_token, "_now", later)

    response = Client().post(link)

    assert response.status_code == 400
    assert INVALID in response.text
    user.refresh_from_db()
    assert not user.email_verified


def test_a_wrong_token_is_recorded_as_misuse_when_used_not_when_opened():
    user = UserFactory(email_verified=False)
    link = f"/verify-email?uid={encode_uid(user)}&token=bogus-token-123"
    client = Client()

    assert client.get(link).status_code == 400
    assert _entries("security.token_misuse") == []

    assert client.post(link).status_code == 400
    [misuse] = _entries("security.token_misuse")
    assert (misuse.resource_id, misuse.success) == (str(user.pk), False)
    user.refresh_from_db()
    assert not user.email_verified


def test_a_password_reset_link_does_not_verify_the_email():
    user = UserFactory(email_verified=False)
    link = f"/verify-email?uid={encode_uid(user)}&token={password_reset_token.make_token(user)}"

    assert Client().post(link).status_code == 400

    user.refresh_from_db()
    assert not user.email_verified


# --- password reset ---------------------------------------------------------------------------


def test_the_emailed_reset_link_sets_the_new_password(user, django_capture_on_commit_callbacks):
    client = Client()
    link = _reset_link(client, user, django_capture_on_commit_callbacks)

    form = client.get(link)

    assert form.status_code == 200
    assert form.text.count('type="password"') == 2
    user.refresh_from_db()
    assert user.check_password(PASSWORD)

    done = _new_password(link, client=client)

    assert done.status_code == 200
    assert "Password changed" in done.text
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    old = _api_post(client, "/api/auth/login/", {"email": user.email, "password": PASSWORD})
    assert old.status_code == 400
    new = _api_post(client, "/api/auth/login/", {"email": user.email, "password": NEW_PASSWORD})
    assert new.status_code == 200
    [entry] = _entries("user.password_reset")
    assert (entry.user_id, entry.origin) == (user.pk, "web")


def test_a_used_reset_link_fails(user, django_capture_on_commit_callbacks):
    link = _reset_link(Client(), user, django_capture_on_commit_callbacks)
    assert _new_password(link).status_code == 200

    opened = Client().get(link)
    again = _new_password(link, "yet-another-Passphrase-7", "yet-another-Passphrase-7")

    for response in (opened, again):
        assert response.status_code == 400
        assert INVALID in response.text
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert len(_entries("user.password_reset")) == 1


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (NEW_PASSWORD, NEW_PASSWORD + "x", "The two passwords differ."),
        ("password123", "password123", "This password is too common."),
        ("", "", "This field is required."),
    ],
    ids=["mismatch", "validator", "empty"],
)
def test_a_refused_new_password_shows_the_form_again_with_its_error(user, first, second, message):
    link = f"/reset-password?uid={encode_uid(user)}&token={password_reset_token.make_token(user)}"

    response = _new_password(link, first, second)

    assert response.status_code == 400
    assert message in response.text
    assert 'type="password"' in response.text
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert _entries("user.password_reset") == []
    assert _new_password(link).status_code == 200  # the link still works


# --- both pages -------------------------------------------------------------------------------

PAGES = ["/verify-email", "/reset-password"]


def _valid_link(page: str, user) -> str:
    generator = email_verification_token if page == "/verify-email" else password_reset_token
    return f"{page}?uid={encode_uid(user)}&token={generator.make_token(user)}"


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    "query",
    [
        "",
        "?token=abc-def",
        "?uid=MQ",
        "?uid=%ED%A0%80&token=abc-def",
        "?uid=MQ&token=%ED%A0%80",
        "?uid=MQ&token=" + "a" * 100_000,
        "?uid=" + "M" * 10_000 + "&token=abc-def",
        "?uid=%00&token=%00",
        f"?uid={urlsafe_base64_encode(b'99999999999999999999999999')}&token=abc-def",
        f"?uid={urlsafe_base64_encode(b'-1')}&token=abc-def",
        "?uid[]=MQ&token=abc-def",
    ],
    ids=[
        "nothing",
        "missing-uid",
        "missing-token",
        "lone-surrogate-uid",
        "lone-surrogate-token",
        "huge-token",
        "huge-uid",
        "nul",
        "uid-past-bigint",
        "negative-uid",
        "uid-as-list",
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_hostile_links_answer_the_invalid_link_page(page, query, method):
    UserFactory()
    form = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}  # as a browser posts

    response = getattr(Client(), method)(page + query, form if method == "post" else {})

    assert response.status_code == 400
    assert INVALID in response.text


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_answer_with_and_without_a_trailing_slash(page):
    user = UserFactory(email_verified=False)
    link = _valid_link(page, user)

    assert Client().get(link.replace("?", "/?")).status_code == 200
    assert Client().get(link).status_code == 200


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_send_no_referer_elsewhere_and_are_neither_stored_nor_indexed(page):
    user = UserFactory(email_verified=False)

    for link in (_valid_link(page, user), f"{page}?uid=MQ&token=bogus"):
        response = Client().get(link)
        assert response["Referrer-Policy"] == "same-origin"
        assert '<meta name="referrer" content="same-origin">' in response.text
        assert response["Cache-Control"] == "no-store"
        assert response["X-Robots-Tag"] == "noindex, nofollow"


@pytest.mark.parametrize("page", PAGES)
def test_a_post_without_the_csrf_token_is_refused(page):
    user = UserFactory(email_verified=False)
    client = Client(enforce_csrf_checks=True)
    link = _valid_link(page, user)
    assert client.get(link).status_code == 200  # sets the CSRF cookie

    response = client.post(link, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert response.status_code == 403
    user.refresh_from_db()
    assert not user.email_verified
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_are_throttled_per_client_ip_with_the_api(page, monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    user = UserFactory(email_verified=False)
    client = Client()
    _api_post(client, "/api/auth/password/reset/", {"email": "nobody@example.com"})

    answers = [client.get(_valid_link(page, user)).status_code for _ in range(3)]

    assert answers == [200, 200, 429]
    refused = client.post(_valid_link(page, user))
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    user.refresh_from_db()
    assert not user.email_verified


def test_the_pages_speak_the_accounts_language_and_a_bad_links_the_browsers(
    client, django_capture_on_commit_callbacks
):
    link = _signed_up_link(client, django_capture_on_commit_callbacks)
    User.objects.update(language="de")

    page = Client(HTTP_ACCEPT_LANGUAGE="fr").get(link)
    bad = Client(HTTP_ACCEPT_LANGUAGE="fr").get("/verify-email?uid=x&token=y")

    assert '<html lang="de">' in page.content.decode()
    assert '<html lang="fr">' in bad.content.decode() and INVALID not in bad.content.decode()
