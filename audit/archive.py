"""Writing a month of the trail to the archive storage (format and offline verification:
audit/archive_format.py), reading it back, and recording it once it verified.

Months are archived in order, once they have ended and every entry of theirs is sealed, by a
daily beat task (so the signed copy outside the database exists long before any retention), and
the retention cleanup removes nothing of a month without its recorded archive. The storage is
Django's `storages["audit_archive"]`: a local folder by default, S3-compatible storage in
production (audit/archive_storage.py). A file already there from an interrupted run is kept
when it holds the same bytes (the gzip stream has no time in it) and refused otherwise.
"""

import bisect
import datetime
import gzip
import hashlib
import json
import tempfile
import zlib
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import connection, transaction
from django.db.models import Max, Min, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from audit import archive_format as fmt
from audit import services
from audit.integrity import GENESIS, row_line
from audit.models import Archive, AuditLog, Checkpoint
from audit.partitions import month_after, month_of
from invoicegen.core.exceptions import ConflictError

_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
COLUMNS_BUT_METADATA = tuple(c for c in fmt.COLUMNS[2:-1] if c != "metadata")
COMPRESS_LEVEL = 6  # zlib's default: 9 took twice as long for a few percent less


class ArchiveError(ConflictError):
    """The month cannot be archived, or what the storage holds is not what was written (the
    API answers 409)."""


class NotReady(ArchiveError):
    """Not yet: the month has not ended or is not sealed, or another run is archiving."""


# Two runs (the beat task's, a cleanup's) writing one month at once could each record a
# manifest the other replaced.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"audit.archive").digest()[:8], "big", signed=True)


@contextmanager
def _one_run():
    if connection.vendor != "postgresql":  # SQLite has one writer at a time
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        if not cursor.fetchone()[0]:
            raise NotReady("another run is archiving the trail")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def storage():
    return storages["audit_archive"]


def signing_key():
    return fmt.private_key(settings.AUDIT_ARCHIVE_SIGNING_KEY)


def month_bounds(month: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    lower = datetime.datetime(month.year, month.month, 1, tzinfo=datetime.UTC)
    upper = datetime.datetime.combine(month_after(month, 1), datetime.time(), datetime.UTC)
    return lower, upper


class StorageFiles:
    """An archive as fmt.Files, read from the storage it was written to."""

    def __init__(self, store, folders: list[str]):
        self.store, self.folders = store, folders

    def names(self) -> list[str]:
        return [
            f"{folder}/{name}" for folder in self.folders for name in self.store.listdir(folder)[1]
        ]

    def open(self, name: str):
        return self.store.open(name, "rb")


def _put(store, name: str, spool) -> dict:
    """Save a spooled file under `name` (one already there must hold the same bytes); its
    manifest entry."""
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.file_digest(spool, "sha256").hexdigest()
    entry = {"name": name.rsplit("/", 1)[1], "bytes": size, "sha256": digest}
    if store.exists(name):
        with store.open(name, "rb") as stored:
            if hashlib.file_digest(stored, "sha256").hexdigest() == digest:
                return entry
        if not _cut_short(store, name):
            raise ArchiveError(f"{name} is already in the archive with other content")
        store.delete(name)  # a write that an interrupted run left unfinished (a folder's)
    spool.seek(0)
    if store.save(name, File(spool)) != name:
        raise ArchiveError(f"the archive storage saved {name} under another name")
    with store.open(name, "rb") as stored:  # read back
        if hashlib.file_digest(stored, "sha256").hexdigest() != digest:
            raise ArchiveError(f"the archive storage holds other bytes than were saved in {name}")
    return entry


def _cut_short(store, name: str) -> bool:
    """Whether a stored file ends before its content does: a gzip stream or a manifest cut off
    mid-write."""
    try:
        with store.open(name, "rb") as stored:
            if name.endswith(".gz"):
                for _ in fmt.gzip_lines(stored, hashlib.sha256()):
                    pass
            else:
                json.loads(stored.read(fmt.MAX_MANIFEST))
    except (ValueError, zlib.error):
        return True
    return False


def _put_lines(store, name: str, lines) -> dict:
    """Gzipped lines (no time in the gzip header: the same lines make the same bytes), written
    a thousand at a time."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=spool, mtime=0, compresslevel=COMPRESS_LEVEL
        ) as packer:
            batch = []
            for line in lines:
                batch.append(line)
                if len(batch) == 1000:
                    packer.write(b"".join(batch))
                    batch.clear()
            packer.write(b"".join(batch))
        return _put(store, name, spool)


class _Rows:
    """The month's entries read in id order, as archive lines, counted by checkpoint; the rows
    of each checkpoint that lies in the month are hashed as they go by, and must be what it
    sealed."""

    def __init__(self, queryset, checkpoints: list[Checkpoint]):
        self.rows = iter(queryset.iterator(chunk_size=5000))
        self.next = next(self.rows, None)
        self.checkpoints = checkpoints
        self.ends = [c.last_id for c in checkpoints]
        self.here = [0] * len(checkpoints)
        self.count = 0
        self.at, self.hasher = None, None
        self.unsealed: list[str] = []  # checkpoints whose rows are not those it sealed

    def lines(self, limit: int, file: dict):
        """Up to `limit` lines; `file` gets their count and first and last ids."""
        first_id, rows = self.next[0], 0
        while self.next is not None and rows < limit:
            row_id, created_at, *values, metadata, digest = self.next
            created_at = created_at.astimezone(datetime.UTC)
            self.seal_line(row_id, row_line(row_id, created_at, digest))
            fields = dict(zip(COLUMNS_BUT_METADATA, values, strict=True))
            head = _LINE.encode({"id": row_id, "created_at": created_at.isoformat(), **fields})
            # The metadata as the database hands it over, JSON already.
            yield f'{head[:-1]},"metadata":{metadata},"digest":{_LINE.encode(digest)}}}\n'.encode()
            rows, last_id = rows + 1, row_id
            self.next = next(self.rows, None)
        self.count += rows
        file.update(rows=rows, first_id=first_id, last_id=last_id)

    def seal_line(self, row_id: int, line: bytes) -> None:
        at = bisect.bisect_left(self.ends, row_id)
        self.here[at] += 1
        if at != self.at:
            self.close()
            self.at, self.hasher = at, hashlib.sha256()
        self.hasher.update(line)

    def close(self) -> None:
        """The checkpoint hashed so far, if all its rows are this month's."""
        if self.at is None:
            return
        checkpoint = self.checkpoints[self.at]
        whole = self.here[self.at] == checkpoint.row_count
        if whole and self.hasher.hexdigest() != checkpoint.rows_hash:
            self.unsealed.append(str(checkpoint))
        self.at = None


def _write_entries(store, folder: str, rows: _Rows, progress) -> list[dict]:
    """The entries' files, AUDIT_ARCHIVE_ROWS_PER_FILE rows each."""
    files = []
    while rows.next is not None:
        file = {}
        lines = rows.lines(settings.AUDIT_ARCHIVE_ROWS_PER_FILE, file)
        entry = _put_lines(store, f"{folder}/entries-{len(files):04d}.jsonl.gz", lines)
        files.append({**entry, **file})
        if progress:
            progress(rows.count)
    return files


def archive_month(month: datetime.date, *, progress=None) -> Archive | None:
    """Archive a month that has ended and is sealed, after every earlier month with entries;
    None when it has no entries."""
    if settings.AUDIT_ARCHIVE_ROWS_PER_FILE < 1:
        raise ArchiveError("AUDIT_ARCHIVE_ROWS_PER_FILE must be at least 1")
    # One transaction: the rows read in one snapshot, and by a plain cursor (outside one,
    # PostgreSQL would copy the whole month aside before the first row, WITH HOLD).
    with _one_run(), transaction.atomic():
        return _archive_month(month.replace(day=1), progress)


def _archive_month(month: datetime.date, progress) -> Archive | None:
    lower, upper = month_bounds(month)
    if upper > timezone.now():
        raise NotReady(f"{month:%Y-%m} has not ended")
    done = Archive.objects.filter(month=month).first()
    if done:
        return done
    previous = Archive.objects.order_by("-month").first()
    if previous and previous.month > month:
        raise ArchiveError(f"{previous.month:%Y-%m} is archived already: months go in order")
    entries = AuditLog.objects.filter(created_at__gte=lower, created_at__lt=upper)
    earlier = AuditLog.objects.filter(created_at__lt=lower)
    if previous:
        earlier = earlier.filter(created_at__gte=month_bounds(previous.month)[1])
    if earlier.exists():
        raise ArchiveError(f"entries before {month:%Y-%m} are not archived yet")
    span = entries.aggregate(first=Min("id"), last=Max("id"))
    if span["first"] is None:
        return None
    # The chain's head as the month ended: the checkpoint over its last entry. Every id up to
    # it is final (the seal's boundary), and a run again writes the same manifest.
    head = Checkpoint.objects.filter(last_id__gte=span["last"]).order_by("last_id").first()
    if head is None:
        raise NotReady(f"{month:%Y-%m} is not sealed yet")

    store, folder = storage(), fmt.month_folder(month)
    checkpoints = list(
        Checkpoint.objects.filter(last_id__gte=span["first"], first_id__lte=span["last"])
    )
    columns = ("id", "created_at", *COLUMNS_BUT_METADATA, "metadata_text", "digest")
    listed = entries.annotate(metadata_text=Cast("metadata", TextField()))
    listed = listed.filter(id__lte=span["last"])  # none written since the span was read
    rows = _Rows(listed.order_by("id").values_list(*columns), checkpoints)
    files = _write_entries(store, folder, rows, progress)
    rows.close()
    if rows.unsealed:
        raise ArchiveError(
            f"entries of {month:%Y-%m} are not those sealed: {', '.join(rows.unsealed)}"
        )
    listing = _put_lines(
        store,
        f"{folder}/checkpoints.jsonl.gz",
        (
            _LINE.encode({**_fields(checkpoint), "rows_here": here}).encode() + b"\n"
            for checkpoint, here in zip(checkpoints, rows.here, strict=True)
            if here
        ),
    )
    key = signing_key()
    manifest = {
        "format": fmt.FORMAT,
        "month": folder,
        "from": lower.isoformat(),
        "to": upper.isoformat(),
        "row_count": rows.count,
        "first_id": span["first"],
        "last_id": span["last"],
        "files": files,
        "checkpoints": listing,
        "chain_head": {"last_id": head.last_id, "digest": head.digest},
        "previous_manifest": previous.manifest_sha256 if previous else GENESIS,
        "public_key": fmt.public_key_text(key),
    }
    name = f"{folder}/{fmt.MANIFEST}"
    with tempfile.SpooledTemporaryFile() as spool:
        spool.write(fmt.signed_manifest(manifest, key))
        manifest_sha256 = _put(store, name, spool)["sha256"]
    _check_signature(store, name, key)
    with transaction.atomic():
        archive = _record(
            month=month,
            first_id=manifest["first_id"],
            last_id=manifest["last_id"],
            row_count=manifest["row_count"],
            manifest=name,
            manifest_sha256=manifest_sha256,
        )
        services.log(
            "audit.archived",
            metadata={
                "month": folder,
                "rows": archive.row_count,
                "manifest_sha256": manifest_sha256,
            },
        )
    return archive


def _record(**values) -> Archive:
    """On PostgreSQL through the owner's audit_record_archive(), which checks the record
    against the entries (the application's role may not write one itself, audit/roles.py)."""
    if connection.vendor != "postgresql":
        return Archive.objects.create(**values)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT audit_record_archive(%s, %s, %s, %s, %s, %s)",
            [
                values[k]
                for k in (
                    "month",
                    "first_id",
                    "last_id",
                    "row_count",
                    "manifest",
                    "manifest_sha256",
                )
            ],
        )
        return Archive.objects.get(pk=cursor.fetchone()[0])


def _fields(checkpoint: Checkpoint) -> dict:
    return {field: getattr(checkpoint, field) for field in fmt.CHECKPOINT_FIELDS}


def _check_signature(store, name: str, key) -> None:
    """The manifest read back is signed by the key (each file was read back as it was saved)."""
    report = fmt.Report()
    if not fmt.read_manifest(StorageFiles(store, []), name, key.public_key(), report):
        raise ArchiveError(f"{name} does not verify: {'; '.join(report.problems)}")


def verify_stored(archive: Archive, *, on_row=None) -> None:
    """Read a recorded archive back again (before its entries leave the database, and when the
    trail is verified: each row goes to `on_row`)."""
    key = signing_key()
    folder = fmt.month_folder(archive.month)
    files = StorageFiles(storage(), [folder])
    try:
        if archive.manifest not in files.names():
            raise ArchiveError(f"the archive of {folder} is gone: no {archive.manifest}")
        report = fmt.verify_archive(files, key.public_key(), on_row=on_row)
        if report.problems:
            problems = "; ".join(report.problems)
            raise ArchiveError(f"the archive of {folder} does not verify: {problems}")
        with storage().open(archive.manifest, "rb") as stored:
            if hashlib.file_digest(stored, "sha256").hexdigest() != archive.manifest_sha256:
                raise ArchiveError(f"the manifest of {folder} is not the one recorded")
    except (OSError, BotoCoreError, ClientError) as error:  # gone, or a storage not answering
        raise ArchiveError(f"the archive of {folder} cannot be read: {error}") from error


def archive_ended_months(*, progress=None) -> list[Archive]:
    """Every month after the last archived one that has ended and is sealed, in order; stops at
    the first that is not sealed yet."""
    last = Archive.objects.order_by("-month").first()
    start = AuditLog.objects.filter(
        **({"created_at__gte": month_bounds(last.month)[1]} if last else {})
    ).aggregate(oldest=Min("created_at"))["oldest"]
    archived = []
    if start is None:
        return archived
    month = month_of(start)
    while month_bounds(month)[1] <= timezone.now():
        try:
            archive = archive_month(month, progress=progress)
        except NotReady:
            break
        if archive:
            archived.append(archive)
        month = month_after(month, 1)
    return archived


def stored_rows(done: Archive, first_id: int, last_id: int):
    """The archived entries of a month with ids first_id..last_id, read from the files that
    hold them (the verification of the trail hashes them into their checkpoint)."""
    store, folder = storage(), fmt.month_folder(done.month)
    with store.open(done.manifest, "rb") as handle:
        files = json.loads(handle.read(fmt.MAX_MANIFEST))["files"]
    for entry in files:
        if entry["last_id"] < first_id or entry["first_id"] > last_id:
            continue
        with store.open(f"{folder}/{entry['name']}", "rb") as handle:
            for raw in fmt.gzip_lines(handle, hashlib.sha256()):
                row = json.loads(raw)
                if first_id <= row["id"] <= last_id:
                    yield row
