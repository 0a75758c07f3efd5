"""Verifying the trail month by month (on PostgreSQL, a partition at a time), so that it scales
to a billion entries and to a trail whose old entries live in the archive only.

The checkpoint chain is checked whole (it is small): each checkpoint's HMAC, that it continues
the one before it, and its times. Then each month on its own:
- its entries in the database are read in id order, and each one's digest is recomputed;
- an archived month's archive is read back and verified along the way (audit/archive.py), and
  merged with them: an entry in both must be the same in both; an archived entry the database
  no longer has must have been removable (older than AUDIT_MIN_RETENTION_DAYS, or in a range
  purged before archives were kept), with a valid digest, and held by no legal hold; an entry
  in the database only must have come after the archive was written (a later id);
- the rows of each checkpoint that lies in the month are hashed again, from the archive where
  the database no longer has them, and compared with what it sealed.
A checkpoint with rows in two months (a seam: the seal cuts ranges at months since monthly
partitions, older ones may not be) is hashed after the months, from the rows of its id range;
one of the checkpoints the run began with that no month saw a row of had them all deleted.

Months are independent: `jobs` processes check them at once (PostgreSQL), and each month's
outcome is stored (VerifiedMonth) as it is known, so that a run that was interrupted continues
with the months it has not checked (`resume`). `since` checks the months from that one on, and
the whole chain.
"""

import bisect
import datetime
import hashlib
import logging
import multiprocessing
import operator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Max, Min
from django.utils import timezone

from audit import archive, holds
from audit.integrity import (
    DIGEST_FIELDS,
    GENESIS,
    LATER_FIELDS,
    checkpoint_digest,
    constant_time_equal,
    row_digest,
    row_line,
)
from audit.models import Archive, AuditLog, Checkpoint, VerificationRun, VerifiedMonth
from audit.partitions import month_after, month_of

logger = logging.getLogger(__name__)
FIELDS = ("id", "created_at", "digest", *DIGEST_FIELDS)
# What an entry and its archived copy are compared on; a line archived before a column was
# added lacks it (blank then), a line without a field that was always there differs.
_COMPARED = operator.itemgetter("digest", *DIGEST_FIELDS)
_ARCHIVED_DEFAULTS = dict.fromkeys(("digest", *DIGEST_FIELDS)) | dict.fromkeys(LATER_FIELDS, "")
KEEP_RUNS = datetime.timedelta(days=30)
WINDOW = 1000  # checkpoints read at a time
RESUME_WITHIN = datetime.timedelta(days=2)  # an older run's outcomes are not taken on trust
MAX_PROBLEMS = 100
# The prefix purge's entries (before retention went by month) say how far it purged; the
# cleanup keeps them (audit/retention.py).
PURGED_THROUGH = "purged_through_id"


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    first_bad_id: int | None
    since: datetime.date | None = None  # the first month checked; None: all of them


@dataclass(frozen=True)
class Removable:
    """What the retention cleanup may have taken out of the database."""

    # Every id up to it, as the cleanup's own (verified) entries say: the prefix purged before
    # archives were kept, so never past the first archived id (a forged entry hides nothing
    # archived).
    purged_through: int
    minimum: datetime.timedelta  # AUDIT_MIN_RETENTION_DAYS
    before: datetime.datetime  # archived entries older than the minimum retention may be gone


def _removable() -> Removable:
    rows = AuditLog.objects.filter(action="audit.purged", metadata__has_key=PURGED_THROUGH)
    valid = [
        row for row in rows.values(*FIELDS) if constant_time_equal(row_digest(row), row["digest"])
    ]
    purged_through = max((row["metadata"][PURGED_THROUGH] for row in valid), default=0)
    first_archived = Archive.objects.aggregate(first=Min("first_id"))["first"]
    if first_archived is not None:
        purged_through = min(purged_through, first_archived - 1)
    minimum = datetime.timedelta(days=settings.AUDIT_MIN_RETENTION_DAYS)
    return Removable(purged_through, minimum, before=timezone.now() - minimum)


def _missing_copies(copies: list[dict]) -> list[int]:
    """First ids of checkpoints copied out of the database (audit/sink.py) that the database
    no longer holds as they were: the newest entries deleted with their checkpoint, or a chain
    sealed again over altered rows by someone holding the key."""
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


def _chain_first_bad() -> int | None:
    """The first checkpoint that is forged, does not continue the one before it, or whose
    times do not."""
    previous = None
    for checkpoint in Checkpoint.objects.order_by("id").iterator(chunk_size=5000):
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
            return checkpoint.first_id
        previous = checkpoint
    return None


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


def _range_matches(checkpoint, rows_hash: str, count: int, oldest, newest) -> bool:
    """The rows hash as sealed, and their times lie where the checkpoint says (lists by date
    would otherwise leave entries out)."""
    times_match = checkpoint.newest_at is None or (
        checkpoint.oldest_at == oldest and checkpoint.newest_at >= newest
    )
    return (
        count == checkpoint.row_count
        and constant_time_equal(rows_hash, checkpoint.rows_hash)
        and times_match
    )


class _Month:
    """A month's entries, in id order, hashed into the checkpoints over them. The checkpoints
    are read a window at a time as the ids go by (a row written into the month long after it
    is no reason to read every checkpoint in between)."""

    def __init__(self, removable: Removable, active: list):
        self.removable, self.active = removable, active
        self.rows = 0
        self.first_bad: int | None = None
        self.problems: list[str] = []
        self.covered: list[list[int]] = []  # id ranges of the checkpoints whole here, and good
        self.seams: list[int] = []  # last ids of those with rows here and elsewhere (or gone)
        self.last_id: int | None = None
        self.window: list[Checkpoint] = []
        self.ends: list[int] = []
        self.more = True
        self.current = None  # the checkpoint being hashed, its hasher, count and times
        self.hasher, self.count, self.oldest, self.newest = None, 0, None, None
        self.row_bad = False  # a row of it is bad already: that row is what is reported

    def bad(self, first_id: int, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        self.first_bad = first_id if self.first_bad is None else min(self.first_bad, first_id)

    def add(self, row: dict, *, differs: bool = False) -> None:
        """An entry read from the database (`differs` from its archived copy)."""
        if differs:
            self.bad(row["id"], f"id {row['id']}: not what its archive holds")
        forged = not constant_time_equal(row_digest(row), row["digest"])
        if forged:
            self.bad(row["id"], f"id {row['id']}: its digest does not match what it says")
        self.line(row["id"], row["created_at"], row["digest"], bad=differs or forged)

    def same(self, row: dict, archived: dict, created_at: datetime.datetime) -> None:
        """An entry both in the database and in its month's archive (written before a column
        was added, its lines lack it: "" where the database has it blank)."""
        differs = row["created_at"] != created_at or (
            _COMPARED(row) != _COMPARED({**_ARCHIVED_DEFAULTS, **archived})
        )
        self.add(row, differs=differs)

    def removed(self, archived: dict, created_at: datetime.datetime) -> None:
        """An archived entry the database no longer has: it was older than the minimum
        retention (or purged before archives were kept), and no hold kept it then (one placed
        after it could go proves nothing)."""
        row_id, entry = archived["id"], {**archived, "created_at": created_at}
        removable_from = created_at + self.removable.minimum
        if not constant_time_equal(row_digest(archived), archived["digest"]):
            self.bad(row_id, f"id {row_id}: archived with a digest that does not match")
        elif not (row_id <= self.removable.purged_through or created_at < self.removable.before):
            self.bad(row_id, f"id {row_id}: gone from the database before its retention ended")
        elif any(h.placed_at <= removable_from and h.holds(entry) for h in self.active):
            self.bad(row_id, f"id {row_id}: gone from the database while a legal hold keeps it")
        self.line(row_id, created_at.astimezone(datetime.UTC), archived["digest"])

    def checkpoint_of(self, row_id: int) -> Checkpoint | None:
        if self.more and (not self.ends or row_id > self.ends[-1]):
            after = Checkpoint.objects.filter(last_id__gte=row_id).order_by("last_id")
            self.window = list(after[:WINDOW])
            self.ends = [checkpoint.last_id for checkpoint in self.window]
            self.more = len(self.window) == WINDOW  # else the chain ends here: the rest unsealed
        at = bisect.bisect_left(self.ends, row_id)
        if at == len(self.ends) or self.window[at].first_id > row_id:
            return None  # not sealed yet
        return self.window[at]

    def line(self, row_id: int, created_at, digest: str, *, bad: bool = False) -> None:
        self.rows += 1
        if self.last_id is not None and row_id <= self.last_id:  # the key is (id, created_at)
            self.bad(row_id, f"id {row_id}: more than once")
            bad = True
        self.last_id = row_id
        checkpoint = self.checkpoint_of(row_id)
        if checkpoint is None:
            return
        if checkpoint != self.current:
            self.close()
            self.current, self.hasher, self.count = checkpoint, hashlib.sha256(), 0
            self.oldest = self.newest = created_at
        self.row_bad = self.row_bad or bad
        self.hasher.update(row_line(row_id, created_at, digest))
        self.count += 1
        self.oldest, self.newest = min(self.oldest, created_at), max(self.newest, created_at)

    def close(self) -> None:
        checkpoint = self.current
        if checkpoint is None:
            return
        if self.count != checkpoint.row_count:
            self.seams.append(checkpoint.last_id)  # rows elsewhere, or missing
        elif self.row_bad or _range_matches(
            checkpoint, self.hasher.hexdigest(), self.count, self.oldest, self.newest
        ):
            _cover(self.covered, checkpoint.first_id, checkpoint.last_id)
        else:
            self.bad(checkpoint.first_id, f"{checkpoint}: its rows do not hash as sealed")
        self.current, self.row_bad = None, False


def _cover(ranges: list[list[int]], first_id: int, last_id: int) -> None:
    """Add first_id..last_id to id ranges kept in order, joining those that touch."""
    if ranges and ranges[-1][1] + 1 >= first_id:
        ranges[-1][1] = max(ranges[-1][1], last_id)
    else:
        ranges.append([first_id, last_id])


def verify_month(run_id: int, month: datetime.date, removable: Removable) -> VerifiedMonth:
    """Check one month (see the module's docstring) and store its outcome. In one transaction:
    outside one, PostgreSQL would copy the whole month aside before the first row (a cursor
    WITH HOLD)."""
    with transaction.atomic():
        return _verify_month(run_id, month, removable)


def _verify_month(run_id: int, month: datetime.date, removable: Removable) -> VerifiedMonth:
    lower, upper = archive.month_bounds(month)
    entries = AuditLog.objects.filter(created_at__gte=lower, created_at__lt=upper)
    done = Archive.objects.filter(month=month).first()
    check = _Month(removable, holds.active_holds())
    database = entries.order_by("id").values(*FIELDS).iterator(chunk_size=5000)
    pending = next(database, None)

    def archived(row: dict, created_at: datetime.datetime) -> None:
        nonlocal pending
        while pending is not None and pending["id"] < row["id"]:
            check.bad(pending["id"], f"id {pending['id']}: not in its month's archive")
            check.add(pending)
            pending = next(database, None)
        if pending is not None and pending["id"] == row["id"]:
            check.same(pending, row, created_at)
            pending = next(database, None)
        else:
            check.removed(row, created_at)

    if done:
        try:
            archive.verify_stored(done, on_row=archived)
        except archive.ArchiveError as error:
            check.bad(done.first_id, str(error))
    while pending is not None:  # after the archive: entries written into the month later
        check.add(pending)
        pending = next(database, None)
    check.close()
    for problem in check.problems:
        logger.error("audit trail verification, %s: %s", f"{month:%Y-%m}", problem)
    return VerifiedMonth.objects.create(
        run_id=run_id,
        month=month,
        rows=check.rows,
        covered=check.covered,
        first_bad_id=check.first_bad,
        seams=check.seams,
        problems=check.problems,
    )


def _seam_first_bad(checkpoint: Checkpoint, removable: Removable) -> int | None:
    """A checkpoint with rows in more than one month, hashed from the rows of its id range in
    the database and in the archives."""
    first_id, last_id = checkpoint.first_id, checkpoint.last_id
    rows = AuditLog.objects.filter(id__gte=first_id, id__lte=last_id)
    rows = list(rows.values_list("id", "created_at", "digest"))
    lines = {row_id: (at, digest) for row_id, at, digest in rows}
    if len(lines) < len(rows):  # an id twice (the key is (id, created_at))
        return first_id
    for done in Archive.objects.filter(last_id__gte=first_id, first_id__lte=last_id):
        for row in archive.stored_rows(done, first_id, last_id):
            at = datetime.datetime.fromisoformat(row["created_at"]).astimezone(datetime.UTC)
            lines.setdefault(row["id"], (at, row["digest"]))
    if len(lines) < checkpoint.row_count and first_id <= removable.purged_through:
        return None  # purged in part before archives were kept: nothing left to hash
    hasher = hashlib.sha256()
    for row_id in sorted(lines):
        hasher.update(row_line(row_id, *lines[row_id]))
    times = [at for at, _ in lines.values()]
    if times and _range_matches(checkpoint, hasher.hexdigest(), len(lines), min(times), max(times)):
        return None
    return first_id


def _gaps_first_bad(run: VerificationRun, results: list[VerifiedMonth], removable: Removable):
    """The first checkpoint (of those the run began with) that no month checked whole and
    none had rows of: its rows were all deleted. Checked from the chain's start, or with
    `since`, from the first checkpoint over entries of that month."""
    if run.head is None:
        return None
    checkpoints = Checkpoint.objects.order_by("first_id")
    unchecked = Checkpoint.objects.none()  # over entries of months the run does not check
    if run.since is not None:
        since = archive.month_bounds(run.since)[0]
        checkpoints = checkpoints.filter(oldest_at__gte=since)
        unchecked = Checkpoint.objects.filter(oldest_at__lt=since)
    start = checkpoints.values_list("first_id", flat=True).first()
    if start is None or start > run.head:
        return None
    seams = Checkpoint.objects.filter(last_id__in={i for m in results for i in m.seams})
    ranges = [[0, removable.purged_through]]
    ranges += [span for m in results for span in m.covered]
    for others in (seams, unchecked.filter(first_id__gt=start)):
        ranges += [list(span) for span in others.values_list("first_id", "last_id")]
    covered: list[list[int]] = []
    for first_id, last_id in sorted(ranges):
        _cover(covered, first_id, last_id)
    expected = start
    for first_id, last_id in covered:
        if first_id > expected:
            break
        expected = max(expected, last_id + 1)
    if expected > run.head:
        return None
    found = Checkpoint.objects.filter(last_id__gte=expected).order_by("last_id").first()
    return found.first_id if found else expected


def _months(since: datetime.date | None) -> list[datetime.date]:
    """The months with entries in the database or in an archive, from `since` on."""
    months = set(Archive.objects.values_list("month", flat=True))
    span = AuditLog.objects.aggregate(oldest=Min("created_at"), newest=Max("created_at"))
    if span["oldest"] is not None:
        month = month_of(span["oldest"])
        last = month_of(span["newest"])
        while month <= last:
            months.add(month)
            month = month_after(month, 1)
    return sorted(m for m in months if since is None or m >= since)


def _verify_month_pk(run_id: int, month: datetime.date, removable: Removable) -> int:
    return verify_month(run_id, month, removable).pk


def _check_months(run: VerificationRun, months: list, removable: Removable, jobs: int):
    """The months' outcomes as they are known: in `jobs` processes on PostgreSQL (outside a
    transaction: the processes open connections of their own)."""
    parallel = connection.vendor == "postgresql" and not connection.in_atomic_block
    if jobs <= 1 or len(months) < 2 or not parallel:
        for month in months:
            yield verify_month(run.pk, month, removable)
        return
    connections.close_all()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"))
    try:
        n = len(months)
        for pk in pool.map(_verify_month_pk, [run.pk] * n, months, [removable] * n):
            yield VerifiedMonth.objects.get(pk=pk)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, not every month queued


def _run(since: datetime.date | None, resume: bool) -> VerificationRun:
    """The run to continue (the newest unfinished one from the same month, begun within
    RESUME_WITHIN), or a new one, which notes the chain's head; runs begun more than KEEP_RUNS
    ago are deleted."""
    since = since.replace(day=1) if since else None
    now = timezone.now()
    VerificationRun.objects.filter(started_at__lt=now - KEEP_RUNS).delete()
    unfinished = VerificationRun.objects.filter(
        finished_at=None, since=since, started_at__gte=now - RESUME_WITHIN
    )
    if resume and unfinished.exists():
        return unfinished.first()
    head = Checkpoint.objects.aggregate(last=Max("last_id"))["last"]
    return VerificationRun.objects.create(since=since, head=head)


def verify_audit_log(
    *,
    progress=None,
    copies: list[dict] | None = None,
    since: datetime.date | None = None,
    jobs: int = 1,
    resume: bool = False,
) -> Verification:
    """Verify the trail (see the module's docstring), against checkpoint copies from outside
    the database when given. Finds altered rows, rows forged without the key, sealed rows
    deleted or inserted, entries gone before their time or while held, archives that differ
    from the database, forged or reordered checkpoints, and checkpoints that are gone or were
    made again."""
    run = _run(since, resume)
    removable = _removable()
    bad = [*_missing_copies(copies or []), _chain_first_bad()]
    results = list(run.months.all())
    checked = {result.month for result in results}
    todo = [month for month in _months(run.since) if month not in checked]
    for result in _check_months(run, todo, removable, jobs):
        results.append(result)
        if progress:
            outcome = f", FAILED at id {result.first_bad_id}" if result.first_bad_id else ""
            progress(f"{result.month:%Y-%m}: {result.rows:,} entries{outcome}")
    bad += [result.first_bad_id for result in results]
    seams = {last_id for result in results for last_id in result.seams}
    for checkpoint in Checkpoint.objects.filter(last_id__in=seams).order_by("last_id"):
        bad.append(_seam_first_bad(checkpoint, removable))
    bad.append(_gaps_first_bad(run, results, removable))
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    first_bad = min((row_id for row_id in bad if row_id is not None), default=None)
    checked_rows = sum(result.rows for result in results)
    return Verification(
        ok=first_bad is None, checked=checked_rows, first_bad_id=first_bad, since=run.since
    )
