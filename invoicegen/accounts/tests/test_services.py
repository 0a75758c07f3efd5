"""Account lifecycle services (invoicegen/accounts/services.py) and the link tokens they use."""

from datetime import datetime, timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction

from invoicegen.accounts import services
from invoicegen.accounts.models import AuthToken, User, hash_token
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.accounts.tokens import (
    decode_uid,
    email_verification_token,
    encode_uid,
    password_reset_token,
)

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-Passphrase-42"


def _error_fields(excinfo):
    return sorted(excinfo.value.message_dict)


def _reset_link(user):
    return {"uid": encode_uid(user), "token": password_reset_token.make_token(user)}


def _verification_link(user):
    return {"uid": encode_uid(user), "token": email_verification_token.make_token(user)}


# --- sign_up ----------------------------------------------------------------------------------


def test_sign_up_creates_an_unverified_user_with_a_hashed_password():
    user = services.sign_up(email="Alice@Example.COM", password=PASSWORD, name="Alice")

    user.refresh_from_db()
    assert user.email == "alice@example.com"
    assert user.name == "Alice"
    assert not user.email_verified
    assert user.is_active
    assert not user.is_staff
    assert user.check_password(PASSWORD)
    assert PASSWORD not in user.password


def test_sign_up_queues_the_welcome_and_verification_emails_on_commit(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        user = services.sign_up(email="alice@example.com", password=PASSWORD)
    assert mail.outbox == []

    for callback in callbacks:
        callback()

    assert len(mail.outbox) == 2
    assert all(message.to == [user.email] for message in mail.outbox)
    bodies = [message.body for message in mail.outbox]
    assert sum("/verify-email?uid=" in body for body in bodies) == 1


def test_sign_up_rolled_back_by_the_caller_sends_no_email(django_capture_on_commit_callbacks):
    def sign_up_then_fail():
        with transaction.atomic():
            services.sign_up(email="alice@example.com", password=PASSWORD)
            raise RuntimeError("the caller fails after signing up")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        sign_up_then_fail()

    assert mail.outbox == []
    assert not User.objects.exists()


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@example.com"])
def test_sign_up_with_a_taken_email_in_any_case_raises_naming_email(email):
    existing = UserFactory(email="taken@example.com")

    with pytest.raises(ValidationError) as excinfo:
        services.sign_up(email=email, password=PASSWORD)

    assert _error_fields(excinfo) == ["email"]
    assert list(User.objects.all()) == [existing]


def test_sign_up_with_a_weak_password_raises_naming_password_and_saves_nothing(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as exc:
        services.sign_up(email="alice@example.com", password="password123")

    assert _error_fields(exc) == ["password"]
    assert not User.objects.exists()
    assert mail.outbox == []


def test_sign_up_checks_the_password_against_the_users_own_attributes():
    with pytest.raises(ValidationError) as excinfo:
        services.sign_up(email="margaret.hamilton@example.com", password="margaret.hamilton")

    assert _error_fields(excinfo) == ["password"]


# --- tokens and login -------------------------------------------------------------------------


def test_create_auth_token_returns_a_raw_key_and_stores_only_its_hash(user):
    raw = services.create_auth_token(user)

    token = AuthToken.objects.get(user=user)
    assert token.key_hash == hash_token(raw)
    assert token.key_hash != raw
    assert len(token.key_hash) == 64
    assert not AuthToken.objects.filter(key_hash=raw).exists()


def test_create_auth_token_issues_a_different_key_each_time(user):
    keys = {services.create_auth_token(user) for _ in range(5)}

    assert len(keys) == 5
    assert AuthToken.objects.filter(user=user).count() == 5


def test_log_in_returns_the_user_and_a_working_token_and_records_the_login(user):
    assert user.last_login is None

    logged_in, raw = services.log_in(email=user.email.upper(), password=PASSWORD)

    assert logged_in == user
    assert AuthToken.objects.get(key_hash=hash_token(raw)).user == user
    user.refresh_from_db()
    assert user.last_login is not None


@pytest.mark.parametrize(
    ("email", "password"),
    [("user@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)],
    ids=["wrong-password", "unknown-email"],
)
def test_log_in_with_bad_credentials_raises_one_message_and_issues_no_token(email, password):
    UserFactory(email="user@example.com")

    with pytest.raises(ValidationError) as excinfo:
        services.log_in(email=email, password=password)

    assert excinfo.value.messages == ["Unable to log in with the provided credentials."]
    assert not AuthToken.objects.exists()


def test_log_in_refuses_an_inactive_user():
    inactive = UserFactory(is_active=False)

    with pytest.raises(ValidationError):
        services.log_in(email=inactive.email, password=PASSWORD)

    assert not AuthToken.objects.exists()


def _request_as(rf, user):
    request = rf.post("/api/auth/logout/")
    request.session = SessionStore()
    request.user = user
    return request


def test_log_out_deletes_only_the_given_token(rf, user):
    services.create_auth_token(user)
    services.create_auth_token(user)
    current, other = AuthToken.objects.filter(user=user)

    services.log_out(_request_as(rf, user), token=current)

    assert list(AuthToken.objects.filter(user=user)) == [other]


def test_log_out_ends_the_session_and_keeps_the_tokens(rf, user):
    services.create_auth_token(user)
    request = _request_as(rf, user)
    request.session["marker"] = "logged in"

    services.log_out(request, token=None)

    assert "marker" not in request.session
    assert not request.user.is_authenticated
    assert AuthToken.objects.filter(user=user).count() == 1


# --- profile ----------------------------------------------------------------------------------


def test_update_profile_saves_only_the_name(user):
    original_email = user.email
    user.email = "changed-in-memory@example.com"

    services.update_profile(user, name="Renamed")

    stored = User.objects.get(pk=user.pk)
    assert stored.name == "Renamed"
    assert stored.email == original_email


# --- change_password --------------------------------------------------------------------------


def test_change_password_sets_it_keeps_the_given_token_and_revokes_the_others(user):
    services.create_auth_token(user)
    services.create_auth_token(user)
    kept, revoked = AuthToken.objects.filter(user=user)
    stranger_token = AuthToken.objects.get(
        key_hash=hash_token(services.create_auth_token(UserFactory()))
    )

    services.change_password(
        user, old_password=PASSWORD, new_password=NEW_PASSWORD, keep_token=kept
    )

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert list(AuthToken.objects.filter(user=user)) == [kept]
    assert not AuthToken.objects.filter(pk=revoked.pk).exists()
    assert AuthToken.objects.filter(pk=stranger_token.pk).exists()


def test_change_password_without_a_token_to_keep_revokes_all_of_them(user):
    services.create_auth_token(user)

    services.change_password(user, old_password=PASSWORD, new_password=NEW_PASSWORD)

    assert not AuthToken.objects.filter(user=user).exists()


def test_change_password_with_a_wrong_old_password_raises_naming_old_password(user):
    services.create_auth_token(user)

    with pytest.raises(ValidationError) as excinfo:
        services.change_password(user, old_password="wrong", new_password=NEW_PASSWORD)

    assert _error_fields(excinfo) == ["old_password"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert AuthToken.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("weak", ["Xk3#pq", "password123", "4938271650394"])
def test_change_password_to_a_weak_one_raises_naming_new_password(user, weak):
    services.create_auth_token(user)

    with pytest.raises(ValidationError) as excinfo:
        services.change_password(user, old_password=PASSWORD, new_password=weak)

    assert _error_fields(excinfo) == ["new_password"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert AuthToken.objects.filter(user=user).count() == 1


# --- password reset ---------------------------------------------------------------------------


def test_request_password_reset_emails_a_reset_link_on_commit(
    user, settings, django_capture_on_commit_callbacks
):
    settings.APP_BASE_URL = "https://spa.example.test"

    with django_capture_on_commit_callbacks(execute=True):
        found = services.request_password_reset(email=user.email.upper())

    assert found == user
    [message] = mail.outbox
    assert message.to == [user.email]
    assert f"https://spa.example.test/reset-password?uid={encode_uid(user)}&token=" in message.body


@pytest.mark.parametrize("case", ["unknown", "inactive"])
def test_request_password_reset_for_no_active_account_returns_none_and_sends_nothing(
    case, django_capture_on_commit_callbacks
):
    email = "nobody@example.com"
    if case == "inactive":
        email = UserFactory(is_active=False).email

    with django_capture_on_commit_callbacks(execute=True):
        assert services.request_password_reset(email=email) is None

    assert mail.outbox == []


def test_reset_password_sets_the_password_and_revokes_every_token(user):
    services.create_auth_token(user)

    services.reset_password(**_reset_link(user), new_password=NEW_PASSWORD)

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not AuthToken.objects.filter(user=user).exists()


def test_reset_password_link_works_once(user):
    link = _reset_link(user)
    services.reset_password(**link, new_password=NEW_PASSWORD)

    with pytest.raises(ValidationError) as excinfo:
        services.reset_password(**link, new_password="yet-another-Passphrase-7")

    assert _error_fields(excinfo) == ["token"]
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_reset_password_refuses_an_expired_link(user, settings, monkeypatch):
    settings.PASSWORD_RESET_TIMEOUT = 60
    link = _reset_link(user)
    monkeypatch.setattr(
        password_reset_token, "_now", lambda: datetime.now() + timedelta(seconds=120)
    )

    with pytest.raises(ValidationError) as excinfo:
        services.reset_password(**link, new_password=NEW_PASSWORD)

    assert _error_fields(excinfo) == ["token"]
    monkeypatch.undo()
    services.reset_password(**link, new_password=NEW_PASSWORD)  # still valid at the real time


def test_reset_password_refuses_an_inactive_user(user):
    link = _reset_link(user)
    User.objects.filter(pk=user.pk).update(is_active=False)

    with pytest.raises(ValidationError):
        services.reset_password(**link, new_password=NEW_PASSWORD)


def test_reset_password_with_a_weak_password_raises_naming_new_password(user):
    with pytest.raises(ValidationError) as excinfo:
        services.reset_password(**_reset_link(user), new_password="password123")

    assert _error_fields(excinfo) == ["new_password"]


@pytest.mark.parametrize("uid", ["", "!!!", "YWJj", "LTE", "OTk5OTk5"])
def test_reset_password_with_a_bad_uid_raises_naming_token(user, uid):
    # "YWJj" is "abc", "LTE" is "-1", "OTk5OTk5" is "999999" (no such user).
    token = password_reset_token.make_token(user)

    with pytest.raises(ValidationError) as excinfo:
        services.reset_password(uid=uid, token=token, new_password=NEW_PASSWORD)

    assert _error_fields(excinfo) == ["token"]


# --- email verification -----------------------------------------------------------------------


def test_verify_email_marks_the_email_verified_once():
    user = UserFactory(email_verified=False)
    link = _verification_link(user)

    services.verify_email(**link)

    user.refresh_from_db()
    assert user.email_verified
    with pytest.raises(ValidationError) as excinfo:
        services.verify_email(**link)
    assert _error_fields(excinfo) == ["token"]


def test_verification_link_dies_when_the_email_changes():
    user = UserFactory(email_verified=False)
    link = _verification_link(user)
    User.objects.filter(pk=user.pk).update(email="someone-else@example.com")

    with pytest.raises(ValidationError):
        services.verify_email(**link)

    user.refresh_from_db()
    assert not user.email_verified


def test_verification_link_expires_after_password_reset_timeout(settings, monkeypatch):
    settings.PASSWORD_RESET_TIMEOUT = 60
    user = UserFactory(email_verified=False)
    link = _verification_link(user)
    monkeypatch.setattr(
        email_verification_token, "_now", lambda: datetime.now() + timedelta(seconds=120)
    )

    with pytest.raises(ValidationError):
        services.verify_email(**link)

    monkeypatch.undo()
    services.verify_email(**link)


def test_verification_and_reset_tokens_are_not_interchangeable(user):
    unverified = UserFactory(email_verified=False)

    with pytest.raises(ValidationError):
        services.verify_email(**_reset_link(unverified))
    with pytest.raises(ValidationError):
        services.reset_password(**_verification_link(user), new_password=NEW_PASSWORD)


def test_uids_round_trip_and_garbage_decodes_to_nothing_usable(user):
    assert decode_uid(encode_uid(user)) == str(user.pk)
    assert not decode_uid("!!!")
    assert decode_uid("_w") is None  # b"\xff" is not UTF-8


# --- dev superuser ----------------------------------------------------------------------------


def test_create_dev_superuser_creates_a_verified_superuser_with_the_returned_password():
    UserFactory()  # an ordinary user does not count

    user, password = services.create_dev_superuser()

    user.refresh_from_db()
    assert user.email == "admin@localhost"
    assert user.is_superuser
    assert user.is_staff
    assert user.email_verified
    assert user.check_password(password)
    assert len(password) >= 16


def test_create_dev_superuser_does_nothing_when_a_superuser_exists():
    UserFactory(is_superuser=True, is_staff=True)

    assert services.create_dev_superuser() is None
    assert User.objects.count() == 1
