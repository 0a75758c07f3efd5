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
import hashlib
import json
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from json.encoder import encode_basestring

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import connection, models, transaction
from django.db.models import Case, Max, Min, TextField, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from isal import igzip

from audit import archive_format as fmt
from audit import services
from audit.integrity import GENESIS, row_text
from audit.models import Archive, AuditLog, Checkpoint
from audit.partitions import month_after, month_of
from invoicegen.core.exceptions import ConflictError

_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
COLUMNS_BUT_METADATA = tuple(c for c in fmt.COLUMNS[2:-1] if c != "metadata")
# ISA-L's level 1: five times as fast as zlib's fastest level, for files 7% larger than zlib's
# default level makes.
COMPRESS_LEVEL = 1
FETCH = 5000  # rows a fetch
# An entry's time as text, as Python's isoformat() writes it in UTC (what the checkpoints
# hash), made by PostgreSQL: a datetime from psycopg costs more than the rest of the line.
_ISO_TIME = (
    "replace(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),"
    " '.000000', '') || '+00:00'"
)


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


def _put_lines(store, name: str, chunks) -> dict:
    """Gzipped chunks of lines (no time in the gzip header: the same lines make the same
    bytes), each compressed in a thread while the next one is made (ISA-L lets go of the
    interpreter's lock)."""
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        with (
            igzip.GzipFile(
                filename="", mode="wb", fileobj=spool, mtime=0, compresslevel=COMPRESS_LEVEL
            ) as packer,
            ThreadPoolExecutor(1) as pool,
        ):
            written = None
            for chunk in chunks:
                if written:
                    written.result()
                written = pool.submit(packer.write, chunk)
            if written:
                written.result()
        return _put(store, name, spool)


def _fetched(cursor):
    """The cursor's rows a batch at a time, each batch fetched in a thread while the one before
    is used (the database works meanwhile)."""
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(cursor.fetchmany, FETCH)
        while rows := batch.result():
            batch = pool.submit(cursor.fetchmany, FETCH)
            yield rows


def _json_text(field: models.Field):
    """The field's value as JSON text, made by the database; None for text, escaped here
    (Python's escaping is faster than PostgreSQL's)."""
    if isinstance(field, models.JSONField):
        json = Cast(field.name, TextField())
    elif isinstance(field, models.BooleanField):
        json = Case(
            When(**{field.name: True}, then=Value("true")),
            default=Value("false"),
            output_field=TextField(),
        )
    elif isinstance(getattr(field, "target_field", field), models.IntegerField):
        json = Cast(field.attname, TextField())
    else:
        return None
    return Coalesce(json, Value("null"), output_field=TextField()) if field.null else json


def _utc_text(moment: datetime.datetime) -> str:
    utc = moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment
    return utc.astimezone(datetime.UTC).isoformat()


class _Lines:
    """An entry's archive line: its fields in the archive's order (the metadata last but the
    digest, as the line has always been written: a run again writes the same bytes), the id
    as a number, created_at as text (_ISO_TIME), the other numbers, booleans and the metadata
    as JSON made by the database, and the text escaped here."""

    def __init__(self, queryset):
        names = ("id", "created_at", *COLUMNS_BUT_METADATA, "metadata", "digest")
        made, columns, self.texts, self.nullable_texts = {}, [], [], []
        # SQLite hands over a datetime (its text has several shapes), made text in rows().
        self.as_text = connection.vendor != "postgresql"
        for at, field in enumerate(AuditLog._meta.get_field(name) for name in names):
            json = None if field.primary_key else _json_text(field)
            if field.name == "created_at":
                if not self.as_text:
                    made["created_at_text"] = RawSQL(_ISO_TIME, ())  # noqa: S611 (ours)
                columns.append("created_at" if self.as_text else "created_at_text")
                self.texts.append(at)
            elif json is not None:
                made[f"{field.column}_json"] = json
                columns.append(f"{field.column}_json")
            else:
                columns.append(field.attname)
                if not field.primary_key:
                    (self.nullable_texts if field.null else self.texts).append(at)
        query = queryset.annotate(**made).values_list(*columns).query
        self.sql, self.params = query.sql_with_params()
        self.format = "{" + ",".join(f'"{name}":%s' for name in names) + "}\n"

    def rows(self, rows: list) -> list:
        """The rows as fetched, with the time as text."""
        if not self.as_text:
            return rows
        return [(row[0], _utc_text(row[1]), *row[2:]) for row in rows]

    def of(self, rows: list) -> bytes:
        lines = []
        for row in rows:
            values = list(row)
            for at in self.texts:
                values[at] = encode_basestring(values[at])
            for at in self.nullable_texts:
                values[at] = "null" if values[at] is None else encode_basestring(values[at])
            lines.append(self.format % tuple(values))
        return "".join(lines).encode()


class _Rows:
    """The month's entries read in id order, a batch at a time, as archive lines, counted by
    checkpoint; the rows of each checkpoint are hashed as they go by, and those of each
    checkpoint that lies wholly in the month must be what it sealed."""

    def __init__(self, queryset, checkpoints: list[Checkpoint]):
        self.lines = _Lines(queryset)
        self.checkpoints = checkpoints
        self.ends = [c.last_id for c in checkpoints]
        self.here = [0] * len(checkpoints)
        self.hashers = [hashlib.sha256() for _ in checkpoints]
        self.count = 0
        self.rest: list = []  # rows fetched, not written yet

    def files(self, limit: int):
        """The lines of up to `limit` rows at a time: (chunks of lines, a dict that gets their
        count and first and last ids once the chunks are read)."""
        # A plain cursor in the caller's transaction (outside one, PostgreSQL would copy the
        # whole month aside before the first row, WITH HOLD).
        with connection.chunked_cursor() as cursor:
            cursor.execute(self.lines.sql, self.lines.params)
            with closing(_fetched(cursor)) as batches:  # the fetch under way ends first
                yield from self._files(batches, limit)

    def _files(self, batches, limit: int):
        self.rest = next(batches, [])
        while self.rest:
            file = {}
            yield self._lines(batches, limit, file), file

    def _lines(self, batches, limit: int, file: dict):
        """The lines of the next `limit` rows (their count and ids into `file`); the rows
        fetched beyond them are kept for the next file."""
        rows, first_id, count = self.rest, self.rest[0][0], 0
        while rows and count < limit:
            taken, rows = self.lines.rows(rows[: limit - count]), rows[limit - count :]
            self._seal(taken)
            yield self.lines.of(taken)
            count, last_id = count + len(taken), taken[-1][0]
            rows = rows or next(batches, [])
        self.count += count
        self.rest = rows
        file.update(rows=count, first_id=first_id, last_id=last_id)

    def _seal(self, rows: list) -> None:
        """The rows' lines (id order) into their checkpoints' hashes."""
        ids = [row[0] for row in rows]
        start = 0
        while start < len(rows):
            at = bisect.bisect_left(self.ends, ids[start])
            end = bisect.bisect_right(ids, self.ends[at], lo=start)
            self.hashers[at].update(
                "".join([row_text(r[0], r[1], r[-1]) for r in rows[start:end]]).encode()
            )
            self.here[at] += end - start
            start = end

    def unsealed(self) -> list[str]:
        """The checkpoints wholly in the month whose rows are not those they sealed."""
        return [
            str(checkpoint)
            for checkpoint, here, hasher in zip(
                self.checkpoints, self.here, self.hashers, strict=True
            )
            if here == checkpoint.row_count and hasher.hexdigest() != checkpoint.rows_hash
        ]


def _write_entries(store, folder: str, rows: _Rows, progress) -> list[dict]:
    """The entries' files, AUDIT_ARCHIVE_ROWS_PER_FILE rows each."""
    files = []
    with closing(rows.files(settings.AUDIT_ARCHIVE_ROWS_PER_FILE)) as written:
        for lines, file in written:
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
    listed = entries.filter(id__lte=span["last"])  # none written since the span was read
    rows = _Rows(listed.order_by("id"), checkpoints)
    files = _write_entries(store, folder, rows, progress)
    if unsealed := rows.unsealed():
        raise ArchiveError(f"entries of {month:%Y-%m} are not those sealed: {', '.join(unsealed)}")
    listing = _put_lines(
        store,
        f"{folder}/checkpoints.jsonl.gz",
        [
            "".join(
                _LINE.encode({**_fields(checkpoint), "rows_here": here}) + "\n"
                for checkpoint, here in zip(checkpoints, rows.here, strict=True)
                if here
            ).encode()
        ],
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
