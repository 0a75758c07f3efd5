"""Endpoint secrets and Standard Webhooks signatures.

A secret is `whsec_` and 32 random bytes in base64, shown to its owner once. Signing needs it
whole, so it is stored encrypted (Fernet, keyed from SECRET_KEY; SECRET_KEY_FALLBACKS still
decrypt after SECRET_KEY is rotated): a copy of the database alone signs nothing.
"""

import base64
import datetime
import secrets

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac
from standardwebhooks.webhooks import Webhook

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _fernet() -> MultiFernet:
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    salted_hmac("webhooks.secret", "", secret=key, algorithm="sha256").digest()
                )
            )
            for key in keys
        ]
    )


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    return _fernet().decrypt(sealed.encode()).decode()


def signature(
    secrets_in_use: list[str], *, message_id: str, timestamp: datetime.datetime, body: str
) -> str:
    """The `webhook-signature` header: a `v1,<signature>` per secret, space-separated (during a
    rotation, the new secret's and the previous one's)."""
    return " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)
        for secret in secrets_in_use
    )
