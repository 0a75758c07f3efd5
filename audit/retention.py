"""The retention cleanup, the trail's one delete path.

It deletes a prefix of the trail (the oldest ids), whole sealed ranges at a time, so that the
checkpoint chain stays verifiable, and stops before the first entry it must keep:
- one younger than the cutoff (never fewer than AUDIT_MIN_RETENTION_DAYS);
- one of a month not archived yet (audit/archive.py): each month is archived first, and its
  archive read back and verified again before any of its entries go;
- one a legal hold keeps (audit/holds.py), which is reported and audited with what it kept.
Batches are short transactions: inserts keep flowing, and an interrupted run can be run again.
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from audit import archive, holds, roles
from audit.models import Archive, AuditLog, Checkpoint, RetentionGrant
from audit.services import log, record_admin_action
from invoicegen.core.exceptions import ConflictError


@dataclass(frozen=True)
class Cleanup:
    cutoff: datetime.datetime
    deleted: int
    purged_through_id: int | None
    dry_run: bool
    held: int  # entries past the cutoff kept, with those after them, for a legal hold
    unarchived: int  # entries past the cutoff kept until their month is archived


def _first_id(queryset) -> int | None:
    return queryset.aggregate(first=Min("id"))["first"]


def _archived_until(*, dry_run: bool) -> datetime.datetime | None:
    """Where the archive ends: after the last archived month, or, for a dry run, after the
    last month a run would archive first (ended, and sealed through its last entry)."""
    last = Archive.objects.order_by("-month").first()
    archived = archive.month_bounds(last.month)[1] if last else None
    if not dry_run:
        return archived
    head = Checkpoint.objects.order_by("-id").first()
    unsealed = AuditLog.objects.filter(id__gt=head.last_id if head else 0)
    first_unsealed = unsealed.aggregate(oldest=Min("created_at"))["oldest"]
    this_month = timezone.now().astimezone(datetime.UTC).date().replace(day=1)
    until = archive.month_bounds(this_month)[0]
    if first_unsealed is not None:
        month = first_unsealed.astimezone(datetime.UTC).date().replace(day=1)
        until = min(until, archive.month_bounds(month)[0])
    return max(until, archived) if archived else until


def _unarchived(*, dry_run: bool) -> list:
    """The entries no archive holds, as querysets: those after the archive's end, those
    before its first month, and in each archived month those with an id past its archive's
    (written into the month after it was archived: a clock gone back). Every id up to an
    archive's last was final when it was written (its month was sealed)."""
    archives = list(Archive.objects.order_by("month"))
    until = _archived_until(dry_run=dry_run)
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


def _boundary(before_id: int | None) -> int | None:
    """The end of the newest sealed range below an id (below every id if None)."""
    checkpoints = Checkpoint.objects.order_by("-last_id")
    if before_id is not None:
        checkpoints = checkpoints.filter(last_id__lt=before_id)
    return checkpoints.values_list("last_id", flat=True).first()


@transaction.atomic
def _purge_batch(through_id: int, batch_size: int) -> int:
    """Delete the oldest `batch_size` rows up to `through_id` in one short transaction."""
    nth = AuditLog.objects.filter(id__lte=through_id).order_by("id").values_list("id", flat=True)
    upper = next(iter(nth[batch_size - 1 : batch_size]), through_id)
    deleted = _delete_through(upper)
    if deleted:
        log("audit.purged", metadata={"purged_through_id": upper, "deleted": deleted})
    return deleted


def _delete_through(upper: int) -> int:
    """On PostgreSQL only the owner's audit_purge() may delete, and it checks for itself that
    every row is sealed, archived, held by no legal hold and past the minimum retention
    (audit/roles.py). SQLite has no roles:
    a grant row, which the trigger looks for, lets this transaction delete."""
    if connection.vendor != "postgresql":
        grant = RetentionGrant.objects.create()
        deleted, _ = AuditLog.objects.filter(id__lte=upper).delete()
        grant.delete()
        return deleted
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit_purge(%s)", [upper])
            return cursor.fetchone()[0]
    except DatabaseError as error:
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        if sqlstate in (roles.NOT_ARCHIVED, roles.HELD):  # since the run began (a new hold)
            raise ConflictError(str(error.__cause__.diag.message_primary)) from error
        if sqlstate not in (roles.NOT_SEALED, roles.TOO_YOUNG):
            raise
        raise ValidationError({"days": [str(error.__cause__.diag.message_primary)]}) from error


def _verify_archives(through_id: int) -> None:
    """Read back, once more, the archive of every month whose entries this run removes."""
    oldest = _first_id(AuditLog.objects.all())
    for done in Archive.objects.filter(first_id__lte=through_id, last_id__gte=oldest or 0):
        archive.verify_stored(done)


def cleanup_audit_logs(
    *,
    days: int,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress=None,
    via: str | None = None,
) -> Cleanup:
    """Delete entries older than `days` days (never fewer than AUDIT_MIN_RETENTION_DAYS) that
    are archived and held by no legal hold. The run is itself audited as
    `admin.audit_cleanup`."""
    minimum = settings.AUDIT_MIN_RETENTION_DAYS
    if days < minimum:
        raise ValidationError(
            {"days": [f"Audit entries must be kept at least {minimum} days; got {days}."]}
        )
    batch_size = batch_size or settings.AUDIT_CLEANUP_BATCH_SIZE
    if batch_size < 1:
        raise ValidationError({"batch_size": ["Must be at least 1."]})
    cutoff = timezone.now() - datetime.timedelta(days=days)
    if not dry_run:
        archive.archive_ended_months()
    young = _first_id(AuditLog.objects.filter(created_at__gte=cutoff))
    unarchived = _unarchived(dry_run=dry_run)
    keep = [first for first in (young, *map(_first_id, unarchived)) if first is not None]
    due_by_age = _boundary(min(keep, default=None))
    active = holds.active_holds()
    held_q = holds.held_by(active)
    first_held = None
    if held_q is not None and due_by_age:
        first_held = _first_id(AuditLog.objects.filter(held_q, id__lte=due_by_age))
    through_id = _boundary(first_held) if first_held else due_by_age
    due = AuditLog.objects.filter(id__lte=through_id).count() if through_id else 0
    held = 0
    if first_held:
        held = AuditLog.objects.filter(id__gt=through_id or 0, id__lte=due_by_age).count()
    waiting = sum(part.filter(created_at__lt=cutoff).count() for part in unarchived)
    deleted = 0
    if not dry_run and through_id:
        _verify_archives(through_id)
        while batch := _purge_batch(through_id, batch_size):
            deleted += batch
            if progress:
                progress(deleted, due)
    if held and not dry_run:
        log(
            "audit.purge_held",
            metadata={"kept": held, "holds": [h.pk for h in active], "first_held_id": first_held},
        )
    result = Cleanup(
        cutoff=cutoff,
        deleted=due if dry_run else deleted,
        purged_through_id=through_id,
        dry_run=dry_run,
        held=held,
        unarchived=waiting,
    )
    details = {
        "days": days,
        "dry_run": dry_run,
        "deleted": result.deleted,
        "cutoff": cutoff,
        "held": held,
        "unarchived": waiting,
    }
    log("admin.audit_cleanup", metadata={**details, "purged_through_id": through_id})
    if via:
        record_admin_action(via, action="admin.audit_cleanup", details=details)
    return result
