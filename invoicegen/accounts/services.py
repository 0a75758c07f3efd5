"""Account lifecycle: every write to a user or its tokens happens here."""

import datetime
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import (
    authenticate,
    logout,
    password_validation,
    update_session_auth_hash,
    user_logged_in,
)
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit import security
from audit import services as audit
from audit.tracking import service_transaction
from invoicegen.accounts import events
from invoicegen.accounts.models import AuthToken, User, hash_token, normalize_email
from invoicegen.accounts.tokens import (
    decode_uid,
    email_verification_token,
    encode_uid,
    password_reset_token,
)
from invoicegen.core.exceptions import LockedOut

INVALID_LINK = "This link is invalid or has expired."
# A token's last use is written at most this often: a sliding expiry counted in days needs no
# write per request.
TOKEN_RENEWAL_INTERVAL = datetime.timedelta(minutes=5)


def _validate_password(password: str, user: User, *, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from error


def _spa_link(page: str, user: User, token: str) -> str:
    return f"{settings.APP_BASE_URL}/{page}?uid={encode_uid(user)}&token={token}"


def make_verification_link(email) -> dict:
    """Made when the email is sent (emails.services link makers): no token is ever stored."""
    user = User.objects.get(pk=email.context["user_id"])
    return {
        "verify_url": _spa_link("verify-email", user, email_verification_token.make_token(user))
    }


def make_reset_link(email) -> dict:
    user = User.objects.get(pk=email.context["user_id"])
    return {"reset_url": _spa_link("reset-password", user, password_reset_token.make_token(user))}


@service_transaction
def sign_up(*, email: str, password: str, name: str = "") -> User:
    user = User(email=normalize_email(email), name=name)
    _validate_password(password, user, field="password")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as error:
        raise ValidationError({"email": ["A user with this email already exists."]}) from error
    events.user_signed_up(user, actor=user)
    return user


def create_auth_token(user: User) -> str:
    """Issue an API token; its raw key is returned once and never stored."""
    raw = secrets.token_urlsafe(32)
    AuthToken.objects.create(user=user, key_hash=hash_token(raw))
    return raw


def _token_expiry_cutoff() -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=settings.AUTH_TOKEN_TTL_DAYS)


def use_auth_token(token: AuthToken) -> AuthToken | None:
    """The token, its expiry slid forward; None if it went unused for AUTH_TOKEN_TTL_DAYS, and
    then it is deleted. The renewal is one conditional UPDATE, at most every
    TOKEN_RENEWAL_INTERVAL, so that concurrent requests write it once. Each write is a single
    statement: no transaction of its own, which would cost every authenticated request a
    BEGIN and a COMMIT."""
    if token.last_used_at < _token_expiry_cutoff():
        token.delete()
        return None
    now = timezone.now()
    stale = now - TOKEN_RENEWAL_INTERVAL
    if token.last_used_at < stale:
        AuthToken.objects.filter(pk=token.pk, last_used_at__lt=stale).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def delete_expired_auth_tokens() -> int:
    """Tokens nobody presented again after they expired; returns how many went."""
    deleted, _ = AuthToken.objects.filter(last_used_at__lt=_token_expiry_cutoff()).delete()
    return deleted


def _one_lockout_at_a_time(email: str) -> None:
    """Failures that reach the threshold together start one lockout: on PostgreSQL a lock on
    the email for the transaction serialises them (SQLite's IMMEDIATE transactions already run
    one at a time)."""
    if connection.vendor == "postgresql":
        digest = hashlib.sha256(f"lockout:{email}".encode()).digest()
        with connection.cursor() as cursor:
            key = int.from_bytes(digest[:8], "big", signed=True)
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@transaction.atomic
def lock_out_if_due(*, email: str) -> datetime.datetime | None:
    """After a failed login: when this email reaches AUTH_LOCKOUT_THRESHOLD failures within
    AUTH_LOCKOUT_MINUTES, lock it (one `security.account_locked` entry, one email to the owner
    of an active account that has it). Answers when the lockout in force ends, if one is.
    Emails lock whether an account has them or not: a lockout tells nobody which ones do."""
    email = normalize_email(email)
    _one_lockout_at_a_time(email)
    ends = security.lockout_ends(email)
    if ends is not None:
        return ends
    failures = security.recent_failed_logins(email)
    if failures < settings.AUTH_LOCKOUT_THRESHOLD:
        return None
    ends = security.record_lockout(email, failures=failures)
    owner = User.objects.filter(email=email, is_active=True).first()
    if owner is not None:
        events.queue_account_email("account_locked", owner, minutes=settings.AUTH_LOCKOUT_MINUTES)
    return ends


def log_in(*, email: str, password: str, request=None) -> tuple[User, str]:
    """Outside a transaction: the failed attempt is recorded (by Django's user_login_failed
    signal) even though the request fails. While the email is locked out, every attempt is
    refused with LockedOut, the right password too (accounts.backends)."""
    email = normalize_email(email)
    user = authenticate(request, email=email, password=password)
    if user is None:
        ends = lock_out_if_due(email=email)
        if ends is not None:
            raise LockedOut(until=ends)
        raise ValidationError("Unable to log in with the provided credentials.")
    with transaction.atomic():
        user_logged_in.send(sender=User, request=request, user=user)
        return user, create_auth_token(user)


@transaction.atomic
def log_out(request, *, token: AuthToken | None) -> None:
    """Revoke the API token used, end the session if there is one (Django's logout also
    sends user_logged_out)."""
    if token is not None:
        token.delete()
    logout(request)


@service_transaction
def update_profile(user: User, *, actor=None, **changes) -> User:
    """Change the user's `name`, `language` or `timezone` (validated by the model)."""
    for field, value in changes.items():
        setattr(user, field, value)
    user.full_clean(exclude=[f.name for f in User._meta.fields if f.name not in changes])
    user.save(update_fields=list(changes))
    events.profile_updated(user, actor=actor)
    return user


@service_transaction
def change_password(
    user: User,
    *,
    old_password: str,
    new_password: str,
    keep_token: AuthToken | None = None,
    request=None,
) -> User:
    """Change the password and revoke every other API token of the user (a stolen token dies
    with the old password); the token or session making the request keeps working."""
    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["The old password is incorrect."]})
    _validate_password(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user.auth_tokens.exclude(pk=getattr(keep_token, "pk", None)).delete()
    if request is not None:
        update_session_auth_hash(request, user)
    events.password_changed(user, actor=user)
    return user


@service_transaction
def request_password_reset(*, email: str) -> User | None:
    """Email a reset link if an active account has this email; say nothing either way."""
    email = normalize_email(email)
    user = User.objects.filter(email=email, is_active=True).first()
    events.password_reset_requested(user, email=email, actor=user)
    return user


def _active_user_of_uid(uid: str) -> User | None:
    pk = decode_uid(uid)
    if not (pk and pk.isascii() and pk.isdigit()):
        return None
    return User.objects.filter(pk=pk, is_active=True).first()


def find_user_of_link(uid: str, token: str, generator) -> User | None:
    """The active user an emailed link is for, None if the link is bad, expired or used; reads
    only, so that a page may check a link before anything is done with it."""
    user = _active_user_of_uid(uid)
    return user if user is not None and generator.check_token(user, token) else None


def _user_from_link(uid: str, token: str, generator, *, purpose: str) -> User:
    """The user an emailed link is for; a bad or used link is recorded as token misuse."""
    user = _active_user_of_uid(uid)
    if user is None or not generator.check_token(user, token):
        audit.log(
            "security.token_misuse",
            target=user or ("account", ""),
            metadata={"reason": f"invalid or used {purpose} link"},
            success=False,
        )
        raise ValidationError({"token": [INVALID_LINK]})
    return user


def reset_password(*, uid: str, token: str, new_password: str) -> User:
    user = _user_from_link(uid, token, password_reset_token, purpose="password reset")
    _validate_password(new_password, user, field="new_password")
    _set_new_password(user, new_password)
    return user


@service_transaction
def _set_new_password(user: User, new_password: str) -> None:
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user.auth_tokens.all().delete()
    events.password_reset(user, actor=user)


def verify_email(*, uid: str, token: str) -> User:
    user = _user_from_link(uid, token, email_verification_token, purpose="email verification")
    _mark_email_verified(user)
    return user


@service_transaction
def _mark_email_verified(user: User) -> None:
    user.email_verified = True
    user.save(update_fields=["email_verified"])
    events.email_verified(user, actor=user)


@transaction.atomic
def create_dev_superuser(email: str = "admin@localhost") -> tuple[User, str] | None:
    """A first superuser for a laptop, with a generated password; None if one exists."""
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    return User.objects.create_superuser(email, password, name="Local admin"), password
