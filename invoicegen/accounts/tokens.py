"""One-time tokens for email links, built on Django's PasswordResetTokenGenerator (HMAC, timed
by PASSWORD_RESET_TIMEOUT, compared in constant time, nothing stored)."""

from django.contrib.auth.tokens import PasswordResetTokenGenerator, default_token_generator
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode


class EmailVerificationTokenGenerator(PasswordResetTokenGenerator):
    key_salt = "invoicegen.accounts.tokens.EmailVerificationTokenGenerator"

    def _make_hash_value(self, user, timestamp):
        # Verifying flips email_verified, which invalidates the token: it works once.
        return f"{user.pk}{user.email}{user.email_verified}{timestamp}"


email_verification_token = EmailVerificationTokenGenerator()
# Django's generator hashes the password and last login: a reset changes the password, so a
# reset token works once.
password_reset_token = default_token_generator


def encode_uid(user) -> str:
    return urlsafe_base64_encode(force_bytes(user.pk))


def decode_uid(uid: str) -> str | None:
    try:
        return force_str(urlsafe_base64_decode(uid))
    except (TypeError, ValueError, UnicodeDecodeError):
        return None
