"""Download tokens: 256 bits, kept only as a SHA-256 (a leaked table opens nothing).

A link made through the API is random. The link in an email is derived from that email, so
that every rendering of it (a retried delivery, a task the broker delivered twice) carries the
same URL and the client's first copy keeps working: it is an HMAC-SHA256, under SECRET_KEY, of
the email's Message-ID. What a leaked database holds of it, the Message-ID and the token's
SHA-256, opens nothing without SECRET_KEY: the HMAC cannot be computed without the key, nor the
SHA-256 reversed. Whoever holds SECRET_KEY as well can already sign sessions and reset
passwords; rotating it changes the token an email would be given next, not the links already
sent (a re-rendered email then gets a second link, and its first one stays valid).
"""

import base64
import hashlib
import hmac
import secrets

from django.utils.crypto import salted_hmac

_EMAIL_LINK_SALT = "downloads.tokens.email_link"


def new_token() -> tuple[str, str]:
    raw = secrets.token_urlsafe(32)
    return raw, hash_token(raw)


def email_token(message_id: str) -> tuple[str, str]:
    """The token of the link in the email with this Message-ID, shaped like `new_token`'s."""
    digest = salted_hmac(_EMAIL_LINK_SALT, message_id, algorithm="sha256").digest()
    raw = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return raw, hash_token(raw)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def matches(raw: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(raw), token_hash)
