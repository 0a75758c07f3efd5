"""Account lifecycle: every write to a user or its tokens happens here."""

import secrets

from django.conf import settings
from django.contrib.auth import authenticate, password_validation, user_logged_in, user_logged_out
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from emails.services import queue_templated_email
from invoicegen.accounts.models import AuthToken, User, hash_token, normalize_email
from invoicegen.accounts.tokens import (
    decode_uid,
    email_verification_token,
    encode_uid,
    password_reset_token,
)

INVALID_LINK = "This link is invalid or has expired."


def _validate_password(password: str, user: User, *, field: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from error


def _spa_link(page: str, user: User, token: str) -> str:
    return f"{settings.APP_BASE_URL}/{page}?uid={encode_uid(user)}&token={token}"


def _queue_verification_email(user: User) -> None:
    queue_templated_email(
        "email_verification",
        to=user.email,
        context={
            "name": user.get_short_name(),
            "verify_url": _spa_link(
                "verify-email", user, email_verification_token.make_token(user)
            ),
        },
    )


@transaction.atomic
def sign_up(*, email: str, password: str, name: str = "") -> User:
    user = User(email=normalize_email(email), name=name)
    _validate_password(password, user, field="password")
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as error:
        raise ValidationError({"email": ["A user with this email already exists."]}) from error
    queue_templated_email("welcome", to=user.email, context={"name": user.get_short_name()})
    _queue_verification_email(user)
    return user


def create_auth_token(user: User) -> str:
    """Issue an API token; its raw key is returned once and never stored."""
    raw = secrets.token_urlsafe(32)
    AuthToken.objects.create(user=user, key_hash=hash_token(raw))
    return raw


@transaction.atomic
def log_in(*, email: str, password: str, request=None) -> tuple[User, str]:
    user = authenticate(request, email=normalize_email(email), password=password)
    if user is None:
        raise ValidationError("Unable to log in with the provided credentials.")
    user_logged_in.send(sender=User, request=request, user=user)
    return user, create_auth_token(user)


@transaction.atomic
def log_out(user: User, *, token: AuthToken | None, request=None) -> None:
    if token is not None:
        token.delete()
    user_logged_out.send(sender=User, request=request, user=user)


@transaction.atomic
def update_profile(user: User, *, name: str) -> User:
    user.name = name
    user.save(update_fields=["name"])
    return user


@transaction.atomic
def change_password(
    user: User, *, old_password: str, new_password: str, keep_token: AuthToken | None = None
) -> User:
    """Change the password and revoke every other API token of the user (a stolen token dies
    with the old password); the token making the request keeps working."""
    if not user.check_password(old_password):
        raise ValidationError({"old_password": ["The old password is incorrect."]})
    _validate_password(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user.auth_tokens.exclude(pk=getattr(keep_token, "pk", None)).delete()
    return user


@transaction.atomic
def request_password_reset(*, email: str) -> User | None:
    """Email a reset link if an active account has this email; say nothing either way."""
    user = User.objects.filter(email=normalize_email(email), is_active=True).first()
    if user is not None:
        queue_templated_email(
            "password_reset",
            to=user.email,
            context={
                "name": user.get_short_name(),
                "reset_url": _spa_link(
                    "reset-password", user, password_reset_token.make_token(user)
                ),
            },
        )
    return user


def _user_from_link(uid: str, token: str, generator) -> User:
    pk = decode_uid(uid)
    user = User.objects.filter(pk=pk, is_active=True).first() if pk and pk.isdigit() else None
    if user is None or not generator.check_token(user, token):
        raise ValidationError({"token": [INVALID_LINK]})
    return user


@transaction.atomic
def reset_password(*, uid: str, token: str, new_password: str) -> User:
    user = _user_from_link(uid, token, password_reset_token)
    _validate_password(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user.auth_tokens.all().delete()
    return user


@transaction.atomic
def verify_email(*, uid: str, token: str) -> User:
    user = _user_from_link(uid, token, email_verification_token)
    user.email_verified = True
    user.save(update_fields=["email_verified"])
    return user


@transaction.atomic
def create_dev_superuser(email: str = "admin@localhost") -> tuple[User, str] | None:
    """A first superuser for a laptop, with a generated password; None if one exists."""
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    return User.objects.create_superuser(email, password, name="Local admin"), password
