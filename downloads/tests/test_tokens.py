"""A token is 256 bits, random from `secrets` or, for an email's link, an HMAC of its
Message-ID under SECRET_KEY; only its SHA-256 is ever kept."""

import base64
import hashlib
import re
import secrets

from downloads import tokens


def test_new_token_draws_its_raw_value_from_secrets_token_urlsafe_of_32_bytes(monkeypatch):
    calls = []
    real_token_urlsafe = secrets.token_urlsafe

    def recording_token_urlsafe(nbytes=None):
        calls.append(nbytes)
        return real_token_urlsafe(nbytes)

    monkeypatch.setattr(secrets, "token_urlsafe", recording_token_urlsafe)

    raw, _ = tokens.new_token()

    assert calls == [32]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", raw)
    assert len(base64.urlsafe_b64decode(raw + "=")) == 32


def test_new_tokens_are_all_different():
    raws = {tokens.new_token()[0] for _ in range(200)}

    assert len(raws) == 200


def test_new_token_pairs_the_raw_value_with_its_sha256_hex_digest():
    raw, token_hash = tokens.new_token()

    assert token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash)
    assert raw not in token_hash


def test_hash_token_is_the_sha256_of_the_raw_value():
    assert tokens.hash_token("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_matches_accepts_the_raw_token_of_a_hash_and_nothing_else():
    raw, token_hash = tokens.new_token()
    other_raw, _ = tokens.new_token()

    assert tokens.matches(raw, token_hash)
    assert not tokens.matches(other_raw, token_hash)
    assert not tokens.matches(raw[:-1], token_hash)
    assert not tokens.matches(token_hash, token_hash)  # the stored hash opens nothing


MESSAGE_ID = "<177.4242.1@invoicegen.local>"


def test_email_token_is_the_same_for_one_message_id_and_shaped_like_a_random_one():
    raw, token_hash = tokens.email_token(MESSAGE_ID)

    assert tokens.email_token(MESSAGE_ID) == (raw, token_hash)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", raw)
    assert token_hash == tokens.hash_token(raw)
    assert MESSAGE_ID not in raw


def test_email_token_differs_with_the_message_id_and_with_secret_key(settings):
    raw, _ = tokens.email_token(MESSAGE_ID)

    assert tokens.email_token("<177.4242.2@invoicegen.local>")[0] != raw
    settings.SECRET_KEY = "another-key-" + "k" * 50
    assert tokens.email_token(MESSAGE_ID)[0] != raw
