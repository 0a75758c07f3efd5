"""Tamper evidence for the audit trail, in the spirit of CloudTrail's digest chain.

Each row gets, at insert, an HMAC-SHA256 over a canonical form of what it says (everything but
the id and time, which the database assigns). A periodic seal writes Checkpoints over settled
rows in id order, each chained to the previous one and covering ids and times too. Verification
(audit/verification.py) recomputes both. The key is AUDIT_HMAC_KEY (by default derived from
SECRET_KEY): someone who can write to the database but does not hold the key can neither forge
a row nor re-seal the chain.
"""

import hashlib
import hmac
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

DIGEST_FIELDS = (
    "action",
    "category",
    "description",
    "user_id",
    "user_email",
    "resource_type",
    "resource_id",
    "ip_address",
    "user_agent",
    "method",
    "path",
    "request_id",
    "metadata",
    "success",
    "origin",  # a column since the trail's names stopped depending on it; "" in older entries
    # What the admin's search finds an entry by (a document's number): covered, or a label
    # rewritten in the database would hide an entry from a search for its resource, or pin it
    # on another, without breaking any digest.
    "resource_label",
    # The personal data sealed under its subject's key, and the hashes that find it
    # (audit/subjects.py): the digest covers the ciphertext, so erasing the key breaks nothing.
    "sealed",
    "email_hash",
    "ip_hash",
)
# Columns added after the first entries were written: "" in the entries older than them, and in
# those that have nothing to put there, which are digested without the blank ones at the end.
LATER_FIELDS = DIGEST_FIELDS[DIGEST_FIELDS.index("origin") :]
GENESIS = "0" * 64
# Built once: an encoder is constructed anew by every json.dumps() with options.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_PLAIN = DjangoJSONEncoder()


def _key() -> bytes:
    return settings.AUDIT_HMAC_KEY.encode()


def normalize_json(value):
    """The value as it will read back from a JSON column, so digests match after a round trip."""
    return json.loads(_PLAIN.encode(value))


def _digested_fields(values: dict) -> tuple[str, ...]:
    """Entries written before `origin` existed (it is "" in them) were digested without it,
    and entries without a label without `resource_label`, and still are: the later fields
    count up to the last one that is not blank, blank ones before it included, so that the
    list of values always says which it ends with. Blanking one in a newer entry changes what
    its digest covers, and so breaks it. (Archived lines older than a column lack it.)"""
    given = [field for field in LATER_FIELDS if values.get(field)]
    return DIGEST_FIELDS[: DIGEST_FIELDS.index(given[-1]) + 1 if given else -len(LATER_FIELDS)]


def row_digest(values: dict) -> str:
    canonical = _CANONICAL.encode([values[field] for field in _digested_fields(values)])
    return hmac.digest(_key(), canonical.encode(), "sha256").hex()


def row_line(row_id: int, created_at, digest: str) -> bytes:
    return row_text(row_id, created_at.isoformat(), digest).encode()


def row_text(row_id: int, created_at: str, digest: str) -> str:
    """A row as a checkpoint hashes it, its time given as Python's isoformat() writes it."""
    return f"{row_id}|{created_at}|{digest}\n"


def checkpoint_digest(
    *, previous_digest: str, first_id: int, last_id: int, row_count: int, rows_hash: str
) -> str:
    message = f"{previous_digest}|{first_id}|{last_id}|{row_count}|{rows_hash}"
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
