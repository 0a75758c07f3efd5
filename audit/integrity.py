"""Tamper evidence for the audit trail, in the spirit of CloudTrail's digest chain.

Each row gets, at insert, an HMAC-SHA256 over a canonical form of what it says (everything but
the id and time, which the database assigns). A periodic seal writes Checkpoints over settled
rows in id order, each chained to the previous one and covering ids and times too. Verification
recomputes both. The key is AUDIT_HMAC_KEY (by default derived from SECRET_KEY): someone who can
write to the database but does not hold the key can neither forge a row nor re-seal the chain.
"""

import datetime
import hashlib
import hmac
import json
from dataclasses import dataclass

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
    # on another, without breaking any digest. "" in older entries and in entries about no
    # labelled resource, which are digested without it (below).
    "resource_label",
)
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
    and entries without a label without `resource_label`, and still are; a label is digested
    with the origin before it, even a blank one, so that the list of values always says which
    of the two it ends with. Blanking either in a newer entry changes what its digest covers,
    and so breaks it."""
    if values.get("resource_label"):
        return DIGEST_FIELDS
    return DIGEST_FIELDS[:-1] if values["origin"] else DIGEST_FIELDS[:-2]


def row_digest(values: dict) -> str:
    canonical = _CANONICAL.encode([values[field] for field in _digested_fields(values)])
    return hmac.digest(_key(), canonical.encode(), "sha256").hex()


def row_line(row_id: int, created_at, digest: str) -> bytes:
    return f"{row_id}|{created_at.isoformat()}|{digest}\n".encode()


def checkpoint_digest(
    *, previous_digest: str, first_id: int, last_id: int, row_count: int, rows_hash: str
) -> str:
    message = f"{previous_digest}|{first_id}|{last_id}|{row_count}|{rows_hash}"
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_id: int | None


def _purged_through(rows: list[dict]) -> int:
    """How far the retention cleanup has legitimately purged, from its own (verified) entries."""
    valid = [row for row in rows if constant_time_equal(row_digest(row), row["digest"])]
    return max((row["metadata"].get("purged_through_id", 0) for row in valid), default=0)


def _missing_copies(copies: list[dict]) -> list[int]:
    """First ids of checkpoints copied out of the database (audit/sink.py) that the database
    no longer holds as they were: the newest entries deleted with their checkpoint, or a chain
    sealed again over altered rows by someone holding the key."""
    from audit.models import Checkpoint

    missing = []
    for start in range(0, len(copies), 1000):  # a year of copies is a million checkpoints
        chunk = copies[start : start + 1000]
        stored = dict(
            Checkpoint.objects.filter(last_id__in=[copy["last_id"] for copy in chunk]).values_list(
                "last_id", "digest"
            )
        )
        missing += [
            copy["first_id"]
            for copy in chunk
            if not constant_time_equal(stored.get(copy["last_id"], ""), copy["digest"])
        ]
    return missing


def verify_audit_log(*, progress=None, copies: list[dict] | None = None) -> Verification:
    """Recompute every row's digest and the checkpoint chain, and compare the checkpoints with
    their copies outside the database when given. Finds altered rows, rows forged without the
    key, sealed rows deleted or inserted, forged or reordered checkpoints, and checkpoints
    that are gone or were made again."""
    from audit.models import AuditLog, Checkpoint

    fields = ("id", "created_at", "digest", *DIGEST_FIELDS)
    purge_rows = list(AuditLog.objects.filter(action="audit.purged").values(*fields))
    purged_through = _purged_through(purge_rows)
    bad_ids = _missing_copies(copies or [])

    checkpoints = list(Checkpoint.objects.order_by("id"))
    previous = None
    for checkpoint in checkpoints:
        expected = checkpoint_digest(
            previous_digest=previous.digest if previous else GENESIS,
            first_id=checkpoint.first_id,
            last_id=checkpoint.last_id,
            row_count=checkpoint.row_count,
            rows_hash=checkpoint.rows_hash,
        )
        contiguous = previous is None or checkpoint.first_id == previous.last_id + 1
        if not (
            contiguous
            and constant_time_equal(expected, checkpoint.digest)
            and _times_follow(previous, checkpoint)
        ):
            bad_ids.append(checkpoint.first_id)
            break
        previous = checkpoint
    # Only ranges whose rows are all still kept can be rehashed; rows of a range that an
    # interrupted cleanup purged in part, and rows not sealed yet, are checked one by one.
    ranges = [c for c in checkpoints if c.first_id > purged_through]

    checked = 0
    current, hasher, count = None, None, 0
    times = Times()
    queryset = AuditLog.objects.filter(id__gt=purged_through).order_by("id").values(*fields)
    for row in queryset.iterator(chunk_size=5000):
        checked += 1
        if progress and checked % 50000 == 0:
            progress(checked)
        if not constant_time_equal(row_digest(row), row["digest"]):
            bad_ids.append(row["id"])
            current = None  # this row is the first bad one; its range need not be reported
            break
        if current is not None and row["id"] > current.last_id:
            if not _range_matches(current, hasher, count, times):
                bad_ids.append(current.first_id)
            current = None
        while ranges and ranges[0].last_id < row["id"]:  # a sealed range with no row left
            bad_ids.append(ranges.pop(0).first_id)
        if current is None and ranges and ranges[0].first_id <= row["id"]:
            current, hasher, count = ranges.pop(0), hashlib.sha256(), 0
            times.oldest = None
        times.add(row["created_at"])
        if current is not None:
            hasher.update(row_line(row["id"], row["created_at"], row["digest"]))
            count += 1
    if current is not None and not _range_matches(current, hasher, count, times):
        bad_ids.append(current.first_id)
    bad_ids += [c.first_id for c in ranges]
    first_bad = min(bad_ids) if bad_ids else None
    return Verification(ok=first_bad is None, checked=checked, first_bad_id=first_bad)


def _times_follow(previous, checkpoint) -> bool:
    """A checkpoint's times (audit/models.py Checkpoint), where it has them, continue its
    predecessor's: lists by date rely on newest_at and max_lag never decreasing."""
    if checkpoint.newest_at is None:
        return previous is None or previous.newest_at is None
    if checkpoint.oldest_at is None or checkpoint.max_lag is None:
        return False
    if checkpoint.max_lag < checkpoint.newest_at - checkpoint.oldest_at:
        return False
    if previous is None or previous.newest_at is None:
        return True
    return checkpoint.newest_at >= previous.newest_at and checkpoint.max_lag >= previous.max_lag


@dataclass
class Times:
    """The oldest time of the rows of the current range, and the newest of every row so far."""

    oldest: datetime.datetime | None = None
    newest: datetime.datetime | None = None

    def add(self, moment: datetime.datetime) -> None:
        self.oldest = moment if self.oldest is None else min(self.oldest, moment)
        self.newest = moment if self.newest is None else max(self.newest, moment)


def _range_matches(checkpoint, hasher, count: int, times: Times) -> bool:
    """The rows hash as sealed, and their times lie where the checkpoint says (lists by date
    would otherwise leave entries out)."""
    times_match = checkpoint.newest_at is None or (
        checkpoint.oldest_at == times.oldest and checkpoint.newest_at >= times.newest
    )
    return (
        count == checkpoint.row_count
        and constant_time_equal(hasher.hexdigest(), checkpoint.rows_hash)
        and times_match
    )
