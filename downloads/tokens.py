"""Download tokens: 256 random bits, kept only as a SHA-256 (a leaked table opens nothing)."""

import hashlib
import hmac
import secrets


def new_token() -> tuple[str, str]:
    raw = secrets.token_urlsafe(32)
    return raw, hash_token(raw)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def matches(raw: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(raw), token_hash)
