"""The audit archive's format, and its verification from the files and the public key alone (no
database, no HMAC key), in the spirit of CloudTrail's digest files and `validate-logs`.

An archive holds a folder per month (`2026-11/`) of entries as gzipped JSON lines in id order
(`entries-0000.jsonl.gz`, ...) and a `manifest.json`: the month's bounds, row count, first and
last id, each file's rows, size and SHA-256, the checkpoints over its ids (audit/models.py
Checkpoint), the checkpoint chain's head when it was written, the SHA-256 of the previous
month's manifest, and an Ed25519 signature over all of that (AUDIT_ARCHIVE_SIGNING_KEY).

Verification finds a changed byte (a file's hash, or the signature), a missing or an extra
file, a broken manifest chain, rows out of their month or order, and archived rows that do not
hash to what the database's checkpoints sealed: each checkpoint whose rows are all archived is
recomputed (`rows_hash` is a plain SHA-256 over id, time and digest).
"""

import base64
import bisect
import datetime
import hashlib
import itertools
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.integrity import DIGEST_FIELDS, GENESIS, row_line

FORMAT = "invoicegen-audit-archive/1"
MANIFEST = "manifest.json"
COLUMNS = ("id", "created_at", *DIGEST_FIELDS, "digest")
CHECKPOINT_FIELDS = ("first_id", "last_id", "row_count", "rows_hash", "previous_digest", "digest")
CHUNK = 1 << 20
MAX_LINE = 16 << 20  # far more than an entry can hold
MAX_MANIFEST = 64 << 20
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical(document: dict) -> bytes:
    return _CANONICAL.encode(document).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def private_key(text: str) -> Ed25519PrivateKey:
    """A key from its 32-byte seed in base64 (what `audit_archive_key --new` prints)."""
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))


def public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def public_key_text(key: Ed25519PrivateKey) -> str:
    return b64(
        key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def signed_manifest(manifest: dict, key: Ed25519PrivateKey) -> bytes:
    signature = b64(key.sign(canonical(manifest)))
    return canonical({**manifest, "signature": signature}) + b"\n"


def month_folder(month: datetime.date) -> str:
    return f"{month:%Y-%m}"


class Files(Protocol):
    """Where an archive is read from: a local folder, or the storage it was written to."""

    def names(self) -> list[str]: ...  # every file, as "2026-11/manifest.json"

    def open(self, name: str) -> BinaryIO: ...


class Folder:
    def __init__(self, root: Path):
        self.root = root

    def names(self) -> list[str]:
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file()
        )

    def open(self, name: str) -> BinaryIO:
        return (self.root / name).open("rb")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    months: int = 0
    rows: int = 0
    checkpoints: int = 0  # recomputed from archived rows
    # The newest month read and its manifest's SHA-256: an archive cut short at its end still
    # verifies, so an auditor compares these with the trail's record (`audit.archived`).
    newest: tuple[str, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def read_manifest(files: Files, name: str, key: Ed25519PublicKey, report: Report):
    """The manifest and its bytes, or None (reported) when it cannot be trusted."""
    try:
        with files.open(name) as handle:
            data = handle.read(MAX_MANIFEST + 1)
        if len(data) > MAX_MANIFEST:
            raise ValueError("too large")
        document = json.loads(data)
        signature = base64.b64decode(document.pop("signature"), validate=True)
        key.verify(signature, canonical(document))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        report.problems.append(f"{name}: not a manifest")
        return None
    except InvalidSignature:
        report.problems.append(f"{name}: the signature does not match (changed, or another key)")
        return None
    if document.get("format") != FORMAT:
        report.problems.append(f"{name}: unknown format {document.get('format')!r}")
        return None
    if not _well_formed(document):
        report.problems.append(f"{name}: signed, but not shaped as a manifest of this format")
        return None
    return document, data


def _is(value, kind) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _well_formed(manifest: dict) -> bool:
    """What the verifier reads from a manifest is there, of its type (a manifest is signed by
    the writer, but a verifier must not fall over whatever it is given)."""
    if not _is(manifest.get("files"), list):
        return False
    listed = [*manifest["files"], manifest.get("checkpoints")]
    try:
        bounds = [datetime.datetime.fromisoformat(manifest[k]) for k in ("from", "to")]
    except (KeyError, TypeError, ValueError):
        return False
    return (
        all(bound.tzinfo is not None for bound in bounds)
        and all(_is(manifest.get(k), str) for k in ("month", "from", "to", "previous_manifest"))
        and all(_is(manifest.get(k), int) for k in ("row_count", "first_id", "last_id"))
        and all(
            _is(entry, dict)
            and _is(entry.get("name"), str)
            and "/" not in entry["name"]
            and _is(entry.get("sha256"), str)
            and all(_is(entry.get(k, 0), int) for k in ("rows", "first_id", "last_id"))
            for entry in listed
        )
    )


def _checkpoint_ok(listed) -> bool:
    return (
        _is(listed, dict)
        and all(_is(listed.get(k), int) for k in ("first_id", "last_id", "row_count", "rows_here"))
        and all(_is(listed.get(k), str) for k in ("rows_hash", "previous_digest", "digest"))
    )


def gzip_lines(handle: BinaryIO, hasher) -> Iterator[bytes]:
    """The lines of a gzipped file, hashing its bytes as stored along the way."""
    inflate = zlib.decompressobj(wbits=31)
    pending = b""
    while chunk := handle.read(CHUNK):
        hasher.update(chunk)
        pending += inflate.decompress(chunk, MAX_LINE)
        while inflate.unconsumed_tail:  # a chunk that inflates far: a line at a time
            *lines, pending = pending.split(b"\n")
            yield from lines
            if len(pending) > MAX_LINE:
                raise ValueError("a line longer than any entry")
            pending += inflate.decompress(inflate.unconsumed_tail, MAX_LINE)
        *lines, pending = pending.split(b"\n")
        yield from lines
        if len(pending) > MAX_LINE:
            raise ValueError("a line longer than any entry")
    pending += inflate.flush()
    if not inflate.eof:
        raise ValueError("the file ends before its gzip stream does")
    if pending:
        yield from pending.split(b"\n")


class Checkpoints:
    """The checkpoints over the archived ids. Each month lists those over its ids with how many
    of their rows are its own (`rows_here`: at a month's edge a checkpoint holds rows of two);
    a checkpoint whose rows are all in the months given is recomputed from them, the others
    are counted only."""

    def __init__(self, report: Report):
        self.report = report
        self.by_last_id: dict[int, dict] = {}
        self.here: dict[tuple[int, str], int] = {}  # (last_id, month) -> rows_here
        self.seen: dict[tuple[int, str], int] = {}
        self.lines: dict[int, list[tuple[int, bytes]]] = {}  # of those all in the months given
        self.recomputed: set[int] = set()
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, listed, month: str) -> None:
        if not _checkpoint_ok(listed):
            self.report.problems.append(f"{month}: a listed checkpoint is not one")
            return
        checkpoint = {field: listed[field] for field in CHECKPOINT_FIELDS}
        known = self.by_last_id.setdefault(checkpoint["last_id"], checkpoint)
        if known != checkpoint:
            self.report.problems.append(f"{month}: checkpoint ..{checkpoint['last_id']} differs")
        self.here[checkpoint["last_id"], month] = listed["rows_here"]

    def close_listing(self) -> None:
        chain = sorted(self.by_last_id.values(), key=lambda c: c["last_id"])
        for previous, checkpoint in itertools.pairwise(chain):
            if checkpoint["first_id"] == previous["last_id"] + 1 and (
                checkpoint["previous_digest"] != previous["digest"]
            ):
                self.report.problems.append(
                    f"checkpoint {checkpoint['first_id']}..: not chained to the one before it"
                )
        self.starts = [c["first_id"] for c in chain]
        self.ends = [c["last_id"] for c in chain]
        totals = {}
        for (last_id, _), rows in self.here.items():
            totals[last_id] = totals.get(last_id, 0) + rows
        self.lines = {
            last_id: []
            for last_id, total in totals.items()
            if total == self.by_last_id[last_id]["row_count"]
        }

    def add_row(self, row_id: int, line: bytes, month: str) -> None:
        at = bisect.bisect_left(self.ends, row_id)
        if at == len(self.ends) or self.starts[at] > row_id:
            self.report.problems.append(f"{month}: id {row_id} is sealed by no listed checkpoint")
            return
        last_id = self.ends[at]
        self.seen[last_id, month] = self.seen.get((last_id, month), 0) + 1
        lines = self.lines.get(last_id)
        if lines is None:
            return
        lines.append((row_id, line))
        if len(lines) == self.by_last_id[last_id]["row_count"]:
            self._recompute(self.by_last_id[last_id], self.lines.pop(last_id))
            self.recomputed.add(last_id)

    def _recompute(self, checkpoint: dict, lines: list[tuple[int, bytes]]) -> None:
        hasher = hashlib.sha256()
        for _, sealed in sorted(lines):
            hasher.update(sealed)
        if hasher.hexdigest() != checkpoint["rows_hash"]:
            self.report.problems.append(
                f"checkpoint {checkpoint['first_id']}..{checkpoint['last_id']}: the archived "
                "rows do not hash to what it sealed"
            )
        self.report.checkpoints += 1

    def close_rows(self) -> None:
        for (last_id, month), rows in sorted(self.here.items()):
            if self.seen.get((last_id, month), 0) != rows:
                self.report.problems.append(
                    f"{month}: {self.seen.get((last_id, month), 0)} rows of checkpoint "
                    f"..{last_id}, not the {rows} listed"
                )
        self.report.notes += [
            f"checkpoint {c['first_id']}..{c['last_id']} also holds entries outside the months "
            "given (or purged before archives were kept): counted, not recomputed"
            for c in self.by_last_id.values()
            if c["last_id"] not in self.recomputed and c["last_id"] not in self.lines
        ]


def _read_lines(files: Files, name: str, entry: dict, report: Report) -> Iterator[dict]:
    """The JSON lines of a listed file; its hash is checked once it has been read through."""
    hasher = hashlib.sha256()
    try:
        with files.open(name) as handle:
            for raw in gzip_lines(handle, hasher):
                yield json.loads(raw)
    except (OSError, ValueError, zlib.error, RecursionError) as error:
        report.problems.append(f"{name}: unreadable ({error})")
        return
    if hasher.hexdigest() != entry["sha256"]:
        report.problems.append(f"{name}: changed (SHA-256 differs from the manifest's)")


def _check_rows(files, folder, manifest, report, checkpoints, on_row) -> int:
    """Each row of the month's files in id order and in the month, given to `on_row` when
    there is one; their count."""
    lower, upper = (datetime.datetime.fromisoformat(manifest[k]) for k in ("from", "to"))
    total, last_id = 0, None
    for entry in manifest["files"]:
        name = f"{folder}/{entry['name']}"
        count, first_id = 0, None
        try:
            for row in _read_lines(files, name, entry, report):
                row_id = row["id"]
                created_at = datetime.datetime.fromisoformat(row["created_at"])
                if last_id is not None and row_id <= last_id:
                    report.problems.append(f"{name}: id {row_id} out of order")
                if not lower <= created_at < upper:
                    report.problems.append(f"{name}: id {row_id} is not of this month")
                first_id = row_id if first_id is None else first_id
                last_id, count = row_id, count + 1
                line = row_line(row_id, created_at.astimezone(datetime.UTC), row["digest"])
                checkpoints.add_row(row_id, line, folder)
                if on_row:
                    on_row(row, created_at)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as error:
            report.problems.append(f"{name}: not an entry ({error!r})")
        if (count, first_id, last_id) != (entry["rows"], entry["first_id"], entry["last_id"]):
            report.problems.append(f"{name}: its rows are not those the manifest lists")
        total += count
    return total


def verify_archive(
    files: Files,
    key: Ed25519PublicKey,
    *,
    progress: Callable[[str], None] | None = None,
    on_row: Callable[[dict, datetime.datetime], None] | None = None,
) -> Report:
    report = Report()
    names = set(files.names())
    manifests, untrusted = {}, set()
    for name in sorted(n for n in names if n.endswith(f"/{MANIFEST}")):
        folder = name.removesuffix(f"/{MANIFEST}")
        read = read_manifest(files, name, key, report)
        if read:
            manifests[folder] = read
        else:
            untrusted.add(folder)
    listed = set()
    for folder, (manifest, _) in manifests.items():
        entries = [*manifest["files"], manifest["checkpoints"], {"name": MANIFEST}]
        listed |= {f"{folder}/{entry['name']}" for entry in entries}
    extra = {n for n in names - listed if n.split("/")[0] not in untrusted}
    report.problems += [f"{name}: extra file, in no manifest" for name in sorted(extra)]
    report.problems += [f"{name}: missing" for name in sorted(listed - names)]

    previous = None
    checkpoints = Checkpoints(report)
    for folder, (manifest, data) in sorted(manifests.items()):
        if folder != manifest["month"]:
            report.problems.append(f"{folder}/{MANIFEST}: is the manifest of {manifest['month']}")
        if previous is None and manifest["previous_manifest"] != GENESIS:
            report.notes.append(f"{folder}: the chain continues an earlier archive not given here")
        elif previous is not None and manifest["previous_manifest"] != sha256(previous):
            report.problems.append(f"{folder}: the manifest chain is broken before this month")
        previous = data
        report.newest = (folder, sha256(data))
        listing = manifest["checkpoints"]
        for checkpoint in _read_lines(files, f"{folder}/{listing['name']}", listing, report):
            checkpoints.add(checkpoint, folder)
    checkpoints.close_listing()

    for folder, (manifest, _) in sorted(manifests.items()):
        rows = _check_rows(files, folder, manifest, report, checkpoints, on_row)
        if rows != manifest["row_count"]:
            report.problems.append(f"{folder}: {rows} rows, not the {manifest['row_count']} listed")
        report.rows += rows
        report.months += 1
        if progress:
            progress(f"{folder}: {rows:,} rows")
    checkpoints.close_rows()
    return report
