"""The retention cleanup, the trail's one delete path.

Each category keeps its entries as long as AUDIT_RETENTION_DAYS_BY_CATEGORY says (`security=730,
request=90`), the others `days` (AUDIT_RETENTION_DAYS), and none fewer than
AUDIT_MIN_RETENTION_DAYS. Entries leave month by month, and only those:
- of a month that is archived (audit/archive.py): a run archives the ended months first, and
  reads a month's archive back and verifies it again before any of its entries go; entries
  written into the month after its archive (a later id) wait for no archive and stay;
- that no legal hold keeps (audit/holds.py): those are reported and audited with what they kept.
A month whose every entry may go leaves by dropping its partition (PostgreSQL: the owner's
audit_drop_month(), a moment's lock instead of a million deletes); otherwise its entries go by
ids, in batches of short transactions (audit_purge()), so inserts keep flowing and an
interrupted run can be run again. Verification then checks each removed entry against the
archive (audit/verification.py).
"""

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from audit import archive, holds, roles, verification
from audit.models import Archive, AuditLog, Checkpoint, RetentionGrant
from audit.partitions import month_after, month_of
from audit.services import log, record_admin_action
from invoicegen.core.exceptions import ConflictError

logger = logging.getLogger(__name__)
# What audit_drop_month() may answer that leaves a month to batches, or to the next run: no
# partition of its own (undefined_table), younger than the minimum retention, not all archived,
# held, its lock not had in time (lock_not_available), or a writer deadlocked with it.
DEADLOCK = "40P01"
DROP_REFUSED = {"42P01", roles.TOO_YOUNG, roles.NOT_ARCHIVED, roles.HELD, "55P03", DEADLOCK}


@dataclass(frozen=True)
class Cleanup:
    cutoff: datetime.datetime  # of the categories with no retention of their own
    deleted: int
    dry_run: bool
    held: int  # entries past their retention kept for a legal hold
    unarchived: int  # entries past their retention kept until their month is archived
    dropped: tuple[str, ...] = ()  # months that left by dropping their partition ("2026-01")


def _due(days: int, now: datetime.datetime) -> Q:
    """The entries past their category's retention (never fewer days than the minimum). The
    entries of the purge of a prefix of ids, which retention did before it went by month,
    stay: they say how far that went (audit/verification.py)."""
    own = settings.AUDIT_RETENTION_DAYS_BY_CATEGORY
    minimum = settings.AUDIT_MIN_RETENTION_DAYS
    due = Q(created_at__lt=now - datetime.timedelta(days=days)) & ~Q(category__in=list(own))
    for category, kept in own.items():
        kept = max(kept, minimum)
        due |= Q(category=category, created_at__lt=now - datetime.timedelta(days=kept))
    return due & ~Q(action="audit.purged", metadata__has_key=verification.PURGED_THROUGH)


def _archived_until(*, ahead: bool) -> datetime.datetime | None:
    """Where the archive ends: after the last archived month, or `ahead` (a dry run of a run
    that archives first), after the last month it would archive (ended, and sealed through its
    last entry)."""
    last = Archive.objects.order_by("-month").first()
    archived = archive.month_bounds(last.month)[1] if last else None
    if not ahead:
        return archived
    head = Checkpoint.objects.order_by("-id").first()
    unsealed = AuditLog.objects.filter(id__gt=head.last_id if head else 0)
    first_unsealed = unsealed.aggregate(oldest=Min("created_at"))["oldest"]
    this_month = month_of(timezone.now())
    until = archive.month_bounds(this_month)[0]
    if first_unsealed is not None:
        month = month_of(first_unsealed)
        until = min(until, archive.month_bounds(month)[0])
    return max(until, archived) if archived else until


def _unarchived(*, ahead: bool) -> list:
    """The entries no archive holds, as querysets: those after the archive's end, those
    before its first month, and in each archived month those with an id past its archive's
    (written into the month after it was archived: a clock gone back). Every id up to an
    archive's last was final when it was written (its month was sealed)."""
    archives = list(Archive.objects.order_by("month"))
    until = _archived_until(ahead=ahead)
    parts = [AuditLog.objects.filter(created_at__gte=until) if until else AuditLog.objects.all()]
    if archives:
        first = archive.month_bounds(archives[0].month)[0]
        parts.append(AuditLog.objects.filter(created_at__lt=first))
    for done in archives:
        lower, upper = archive.month_bounds(done.month)
        parts.append(
            AuditLog.objects.filter(
                created_at__gte=lower, created_at__lt=upper, id__gt=done.last_id
            )
        )
    return parts


def _months(before: datetime.datetime, *, ahead: bool) -> list[tuple[datetime.date, int | None]]:
    """The months that began before `before`, with their archive's last id: those archived,
    and `ahead` also those a run would archive first (None: all of their entries)."""
    months = [
        (done.month, done.last_id)
        for done in Archive.objects.filter(month__lt=before.date()).order_by("month")
    ]
    if not ahead:
        return months
    until = _archived_until(ahead=True)
    after = archive.month_bounds(months[-1][0])[1] if months else None
    oldest = AuditLog.objects.filter(**({"created_at__gte": after} if after else {}))
    oldest = oldest.aggregate(oldest=Min("created_at"))["oldest"]
    month = month_of(oldest) if oldest else None
    while month and archive.month_bounds(month)[1] <= until and month < before.date():
        months.append((month, None))
        month = month_after(month, 1)
    return months


def _going(month: datetime.date, last_id: int | None, due: Q):
    """The month's entries that may go now: past retention, archived, and held by no hold
    (read again each time: a hold may be placed while a run goes on)."""
    lower, upper = archive.month_bounds(month)
    going = AuditLog.objects.filter(due, created_at__gte=lower, created_at__lt=upper)
    if last_id is not None:
        going = going.filter(id__lte=last_id)
    held = holds.held_by(holds.active_holds())
    return going.exclude(held) if held is not None else going


class HeldMeanwhile(ConflictError):
    """A legal hold placed while the run went on keeps an entry of the batch."""


def _owner_call(sql: str, params: list) -> int:
    """One of the owner's functions (audit/roles.py), its refusals as the API's errors."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]
    except DatabaseError as error:
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        message = str(getattr(error.__cause__, "diag", error).message_primary)
        if sqlstate == roles.HELD:
            raise HeldMeanwhile(message) from error
        if sqlstate == roles.NOT_ARCHIVED:
            raise ConflictError(message) from error
        if sqlstate == roles.TOO_YOUNG:
            raise ValidationError({"days": [message]}) from error
        if sqlstate == DEADLOCK:  # with a partition's drop or a hold placed: run it again
            raise ConflictError("the cleanup met a concurrent change; run it again") from error
        raise


@transaction.atomic
def _purge_batch(month: datetime.date, ids: list[int]) -> int:
    """Delete these entries of the month in one short transaction. On PostgreSQL only the
    owner's audit_purge() may delete, and it checks each entry for itself. SQLite has no
    roles: a grant row, which the trigger looks for, lets this transaction delete."""
    if connection.vendor == "postgresql":
        deleted = _owner_call("SELECT audit_purge(%s, %s::bigint[])", [month, ids])
    else:
        grant = RetentionGrant.objects.create()
        deleted, _ = AuditLog.objects.filter(id__in=ids).delete()
        grant.delete()
    log(
        "audit.purged",
        metadata={
            "month": f"{month:%Y-%m}",
            "deleted": deleted,
            "first_id": ids[0],
            "last_id": ids[-1],
        },
    )
    return deleted


def _drop(month: datetime.date) -> int | None:
    """The month's partition detached and dropped; None when it has none of its own, or the
    owner's function refuses (an entry written into the month or a hold placed meanwhile, a
    lock not had within its time): its entries then go in batches, or wait."""
    if connection.vendor != "postgresql":
        return None
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT audit_drop_month(%s)", [month])
            dropped = cursor.fetchone()[0]
            log(
                "audit.purged",
                metadata={"month": f"{month:%Y-%m}", "deleted": dropped, "dropped": True},
            )
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) not in DROP_REFUSED:
            raise
        logger.info("audit month %s not dropped: %s", f"{month:%Y-%m}", error)
        return None
    return dropped


@dataclass
class _Run:
    due: Q
    batch_size: int
    total: int  # entries that may go, for the progress
    progress: Callable[[int, int], None] | None
    deleted: int = 0
    dropped: list[str] = field(default_factory=list)

    def clean(self, month: datetime.date, last_id: int) -> None:
        """Remove what may go of an archived month, its archive read back first."""
        archive.verify_stored(Archive.objects.get(month=month))
        lower, upper = archive.month_bounds(month)
        everything = AuditLog.objects.filter(created_at__gte=lower, created_at__lt=upper)
        minimum = datetime.timedelta(days=settings.AUDIT_MIN_RETENTION_DAYS)
        whole = upper <= timezone.now() - minimum  # the owner's function asks the same
        if whole and _going(month, last_id, self.due).count() == everything.count():
            dropped = _drop(month)
            if dropped is not None:
                self.dropped.append(f"{month:%Y-%m}")
                self.removed(dropped)
                return
        retries, after = 3, 0
        while ids := self.batch(month, last_id, after):
            try:
                self.removed(_purge_batch(month, ids))
            except HeldMeanwhile:  # read the holds again, with the batch
                retries -= 1
                if not retries:
                    raise
                continue
            after = ids[-1]  # the next batch starts past this one, not over its dead rows

    def batch(self, month: datetime.date, last_id: int, after: int) -> list[int]:
        going = _going(month, last_id, self.due).filter(id__gt=after).order_by("id")
        return list(going.values_list("id", flat=True)[: self.batch_size])

    def removed(self, count: int) -> None:
        self.deleted += count
        if self.progress:
            self.progress(self.deleted, self.total)


def cleanup_audit_logs(
    *,
    days: int,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress=None,
    via: str | None = None,
    archive_first: bool = True,
) -> Cleanup:
    """Remove the entries past their category's retention (`days` for a category with none of
    its own, never fewer than AUDIT_MIN_RETENTION_DAYS) that are archived and held by no legal
    hold. The ended months are archived first, unless `archive_first` is off (a request: the
    archive of a large month takes minutes, and the beat archives every night); then only the
    months archived already are cleaned. The run is itself audited as `admin.audit_cleanup`."""
    minimum = settings.AUDIT_MIN_RETENTION_DAYS
    if days < minimum:
        raise ValidationError(
            {"days": [f"Audit entries must be kept at least {minimum} days; got {days}."]}
        )
    batch_size = batch_size or settings.AUDIT_CLEANUP_BATCH_SIZE
    if batch_size < 1:
        raise ValidationError({"batch_size": ["Must be at least 1."]})
    now = timezone.now()
    cutoff = now - datetime.timedelta(days=days)
    due = _due(days, now)
    shortest = min([days, *settings.AUDIT_RETENTION_DAYS_BY_CATEGORY.values()])
    if archive_first and not dry_run:
        archive.archive_ended_months()
    ahead = archive_first and dry_run
    months = _months(now - datetime.timedelta(days=shortest), ahead=ahead)
    counted = [(month, last_id, _going(month, last_id, due).count()) for month, last_id in months]
    run = _Run(due, batch_size, sum(count for *_, count in counted), progress)
    active = holds.active_holds()
    held_q = holds.held_by(active)
    held = AuditLog.objects.filter(due, held_q).count() if held_q is not None else 0
    waiting = sum(part.filter(due).count() for part in _unarchived(ahead=ahead))
    if not dry_run:
        for month, last_id, count in counted:
            if count:
                run.clean(month, last_id)
        if held:
            log("audit.purge_held", metadata={"kept": held, "holds": [h.pk for h in active]})
    result = Cleanup(
        cutoff=cutoff,
        deleted=run.total if dry_run else run.deleted,
        dry_run=dry_run,
        held=held,
        unarchived=waiting,
        dropped=tuple(run.dropped),
    )
    details = {
        "days": days,
        "by_category": settings.AUDIT_RETENTION_DAYS_BY_CATEGORY,
        "dry_run": dry_run,
        "deleted": result.deleted,
        "cutoff": cutoff,
        "held": held,
        "unarchived": waiting,
        "dropped": run.dropped,
    }
    log("admin.audit_cleanup", metadata=details)
    if via:
        record_admin_action(via, action="admin.audit_cleanup", details=details)
    return result
