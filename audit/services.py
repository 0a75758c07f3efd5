"""Writing the audit trail, in the caller's transaction: `log()` for one entry, and
`record_event()` for a domain event, whose entry also holds the field diffs of the change it
names and which reaches the event's subscribers once the transaction commits."""

import datetime
import hashlib
import json
import logging
from functools import lru_cache, partial

from django.db import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    models,
    transaction,
)
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit import context as audit_context
from audit import export, integrity, registry, roles, sink, subjects
from audit.integrity import normalize_json, row_digest
from audit.models import AdminAction, AuditLog, Checkpoint
from invoicegen.core import events as domain_events

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
SENSITIVE_WORDS = ("password", "token", "secret", "key_hash", "otp")

LOCK_NOT_AVAILABLE = "55P03"
LABEL_LENGTH = AuditLog._meta.get_field("resource_label").max_length
SEAL_LOCK_WAIT_MS = 100


@lru_cache(maxsize=1024)
def is_sensitive(field_name: str) -> bool:
    return any(word in field_name.lower() for word in SENSITIVE_WORDS)


def _target(target) -> tuple[str, str, str]:
    """(resource_type, resource_id, label) of a model instance or a (type, id) pair (no label)."""
    if target is None:
        return "", "", ""
    if isinstance(target, tuple):
        resource_type, resource_id = target
        return resource_type, str(resource_id), ""
    from audit.tracking import describe_instance

    return describe_instance(target)


def entry_values(
    action: str,
    *,
    target=None,
    actor=None,
    metadata: dict | None = None,
    success: bool = True,
    context: audit_context.AuditContext | None = None,
) -> dict:
    """The columns of one entry as it reads, before it is stored (stored())."""
    context = context or audit_context.current()
    if actor is None:
        user_id, user_email = context.actor()
    else:
        user_id, user_email = actor.pk, actor.email
    resource_type, resource_id, label = _target(target)
    label = audit_context.clean_text(label, LABEL_LENGTH)
    named = f"{resource_type} {label or resource_id}" if resource_type else ""
    metadata = normalize_json(metadata or {})
    event = registry.action(action)
    values = {
        "action": action,
        "category": event.category,
        "description": audit_context.clean_text(
            event.describe(actor=user_email or "anonymous", target=named, **metadata), 1000
        ),
        "user_id": user_id,
        "user_email": user_email,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "ip_address": context.ip_address,
        "user_agent": context.user_agent,
        "method": context.method,
        "path": context.path,
        "request_id": context.request_id,
        "metadata": metadata,
        "success": success,
        "origin": context.origin,
        "resource_label": label,
        "sealed": "",
        "email_hash": "",
        "ip_hash": "",
    }
    return values


def stored(entries: list[dict]) -> list[dict]:
    """The entries (entry_values()) as they are written: personal data sealed under the key of
    the person it is about (audit/subjects.py), and digested."""
    return [{**values, "digest": row_digest(values)} for values in subjects.seal(entries)]


def log(action: str, **kwargs) -> AuditLog:
    """Append one entry. `target` is a model instance or a (type, id) pair; `actor` defaults
    to the user of the current request or task (None for anonymous and system actions)."""
    return insert_entry(entry_values(action, **kwargs))


def record_event(
    name: str, *, target, actor, params: dict | None = None, success: bool = True
) -> AuditLog:
    """A domain event: its one entry (with the field diffs of the change it names, waiting in
    the service's transaction, audit/tracking.py) now, and after commit the event for its
    subscribers (invoicegen/core/events.py)."""
    from audit.tracking import take_changes

    changes = take_changes(target)
    metadata = {**(params or {}), **({"changes": changes} if changes else {})}
    entry = log(name, target=target, actor=actor, metadata=metadata, success=success)
    domain_events.publish(
        domain_events.Event(
            name=name,
            resource_type=entry.resource_type,
            resource_id=entry.resource_id,
            actor_id=entry.user_id,
            params=entry.metadata,
            entry_id=entry.id,
            occurred_at=entry.created_at,
        )
    )
    return entry


COLUMNS = roles.ENTRY_COLUMNS
INSERT_INTO = f"INSERT INTO {AuditLog._meta.db_table} ({', '.join(COLUMNS)})"
ROW_PLACEHOLDERS = f"({', '.join(['%s'] * len(COLUMNS))})"
INSERT_SQL = f"{INSERT_INTO} VALUES {ROW_PLACEHOLDERS}"
# PostgreSQL: entries travel as JSON to the owner's audit_append() (audit/roles.py), the values
# all entries share (the request's context, the action) once, and the others in an array with
# an object per entry. A parameter per column, or an array per column, cost more to adapt on
# the client than the server's whole insert; the server takes the JSON apart in C.
APPEND_FROM = "FROM audit_append(%s::json, %s::json)"


def insert_params(values: dict) -> list:
    return [json.dumps(values[c]) if c == "metadata" else values[c] for c in COLUMNS]


def _same_in_all(column: str, entries: list[dict]) -> bool:
    """Every entry holds the same scalar, type included (True == 1 in Python, not in JSON);
    metadata is never shared by several entries."""
    first = entries[0][column]
    return column != "metadata" and all(
        type(entry[column]) is type(first) and entry[column] == first for entry in entries
    )


def append_params(entries: list[dict]) -> list[str]:
    """The two arguments of audit_append() for entries (stored(): JSON types only)."""
    first = entries[0]
    shared = COLUMNS if len(entries) == 1 else [c for c in COLUMNS if _same_in_all(c, entries)]
    apart = [c for c in COLUMNS if c not in shared]
    rows = [{c: entry[c] for c in apart} for entry in entries]
    return [json.dumps({c: first[c] for c in shared}), json.dumps(rows)]


def insert_entry(values: dict) -> AuditLog:
    """One plain INSERT: the trail's hot path skips the ORM's per-save machinery (it would
    cost about a third more per audited change; see bench/bench_audit.py). The entry comes
    back as it reads."""
    row = stored([values])[0]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT id, created_at {APPEND_FROM}", append_params([row]))
        else:
            cursor.execute(f"{INSERT_SQL} RETURNING id, created_at", insert_params(row))
        row_id, created_at = cursor.fetchone()
    if isinstance(created_at, str):  # SQLite hands back text or a naive datetime, in UTC
        created_at = parse_datetime(created_at)
    if timezone.is_naive(created_at):
        created_at = timezone.make_aware(created_at, datetime.UTC)
    stored_only = {column: row[column] for column in (*subjects.STORED_ONLY, "digest")}
    return AuditLog(id=row_id, created_at=created_at, **{**values, **stored_only})


def insert_entries(entries: list[dict], *, rows_per_statement: int = 1000) -> None:
    """Many entries (bulk writes) in one statement on PostgreSQL, in a multi-row VALUES per
    `rows_per_statement` elsewhere."""
    if not entries:
        return
    entries = stored(entries)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT count(*) {APPEND_FROM}", append_params(entries))
            return
        rows = [insert_params(values) for values in entries]
        for start in range(0, len(rows), rows_per_statement):
            chunk = rows[start : start + rows_per_statement]
            values = ", ".join([ROW_PLACEHOLDERS] * len(chunk))
            cursor.execute(f"{INSERT_INTO} VALUES {values}", [v for row in chunk for v in row])


def record_admin_action(
    kind: str,
    *,
    action: str,
    target: models.Model | None = None,
    details: dict | None = None,
) -> AdminAction:
    """One row in the admin-action table for what a staff member did in the admin or API."""
    context = audit_context.current()
    admin_id, admin_email = context.actor()
    return AdminAction.objects.create(
        admin_id=admin_id,
        admin_email=admin_email,
        kind=kind,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=audit_context.clean_text(str(target) if target is not None else "", 200),
        details=normalize_json(details or {}),
        ip_address=context.ip_address,
        request_id=context.request_id,
    )


def seal_audit_log(*, max_rows: int = 100_000) -> Checkpoint | None:
    """Write a checkpoint over the committed rows after the last one (None if there are none).

    Only ids below the seal boundary are final: a transaction still open may yet commit a lower
    id than rows already visible. Two sealers racing both chain to the same previous
    checkpoint; its successor is unique, so one wins and the other writes nothing.
    """
    boundary = _seal_boundary()
    if boundary is None:
        return None
    with transaction.atomic():
        previous = Checkpoint.objects.order_by("-id").first()
        start = previous.last_id + 1 if previous else 0
        rows = AuditLog.objects.filter(id__gte=start, id__lte=boundary).order_by("id")
        rows = _one_month(list(rows.values_list("id", "created_at", "digest")[:max_rows]))
        if not rows:
            return None
        hasher = hashlib.sha256()
        for row in rows:
            hasher.update(integrity.row_line(*row))
        values = {
            "previous_digest": previous.digest if previous else integrity.GENESIS,
            "first_id": start if previous else rows[0][0],
            "last_id": rows[-1][0],
            "row_count": len(rows),
            "rows_hash": hasher.hexdigest(),
        }
        try:
            with transaction.atomic():
                digest = integrity.checkpoint_digest(**values)
                checkpoint = _add_checkpoint(values, digest, previous, rows)
        except IntegrityError:
            return None
        transaction.on_commit(partial(sink.publish, checkpoint))
    return checkpoint


def _one_month(rows: list) -> list:
    """The rows up to the first of another month (UTC): a checkpoint over one month's entries
    is verified with that month (audit/verification.py)."""
    if not rows:
        return rows
    first = rows[0][1].astimezone(datetime.UTC)
    for index, (_, created_at, _) in enumerate(rows):
        moment = created_at.astimezone(datetime.UTC)
        if (moment.year, moment.month) != (first.year, first.month):
            return rows[:index]
    return rows


def _add_checkpoint(values: dict, digest: str, previous: Checkpoint | None, rows) -> Checkpoint:
    """On PostgreSQL through the owner's audit_add_checkpoint(), which checks that it is the
    next link of the chain over rows that exist (the application role may not insert one),
    and writes the range's times itself. Elsewhere the times come from the rows read."""
    if connection.vendor != "postgresql":
        return Checkpoint.objects.create(
            **values, digest=digest, **_checkpoint_times(previous, [row[1] for row in rows])
        )
    arguments = [*(values[field] for field in roles.CHECKPOINT_FIELDS), digest]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT audit_add_checkpoint(%s, %s, %s, %s, %s, %s)", arguments)
            checkpoint_id = cursor.fetchone()[0]
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == roles.NOT_NEXT:  # another sealer won
            raise IntegrityError(str(error)) from error
        raise
    return Checkpoint.objects.get(pk=checkpoint_id)


def _checkpoint_times(previous: Checkpoint | None, times: list) -> dict:
    """oldest_at, newest_at and max_lag of the checkpoint after `previous` over entries of these
    times, as the owner's audit_add_checkpoint() computes them on PostgreSQL."""
    earlier = previous.newest_at if previous else None
    if previous and earlier is None:  # after checkpoints older than the times: read once
        earlier = AuditLog.objects.filter(id__lte=previous.last_id).aggregate(t=Max("created_at"))
        earlier = earlier["t"]
    oldest, newest = min(times), max(times)
    newest = max(newest, earlier or newest)
    lag = newest - oldest
    if previous and previous.max_lag:
        lag = max(lag, previous.max_lag)
    return {"oldest_at": oldest, "newest_at": newest, "max_lag": lag}


def _seal_boundary() -> int | None:
    """The highest id below which no entry can still appear. On PostgreSQL the owner's
    audit_seal_boundary() waits for every open writer of the trail (audit/roles.py). Its lock
    request holds up new entries while it waits, so it waits a moment only (and gives up
    before PostgreSQL would cancel an autovacuum for it): a round that cannot have it is
    skipped, and the next one seals. SQLite has one writer at a time: inside a transaction,
    what is visible is final."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return AuditLog.objects.aggregate(last=Max("id"))["last"]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{SEAL_LOCK_WAIT_MS}ms'")
            cursor.execute("SELECT audit_seal_boundary()")
            return cursor.fetchone()[0]
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        logger.info("audit seal skipped: a transaction kept the trail busy")
        return None


def check_audit_log(
    *,
    progress=None,
    copies: list[dict] | None = None,
    since: datetime.date | None = None,
    jobs: int = 1,
    resume: bool = False,
):
    """Verify the trail (audit/verification.py); the outcome is itself recorded: a success as
    `audit.verified` (the dashboard shows the last one), a failure as a security event."""
    from audit import verification  # it reads archives, whose writer logs through this module

    result = verification.verify_audit_log(
        progress=progress, copies=copies, since=since, jobs=jobs, resume=resume
    )
    since = {"since": result.since.isoformat()} if result.since else {}
    if result.ok:
        log("audit.verified", metadata={"checked": result.checked, **since})
    else:
        log(
            "audit.tamper_detected",
            metadata={"first_bad_id": result.first_bad_id, "checked": result.checked, **since},
            success=False,
        )
        logger.error("audit trail verification failed at id %s", result.first_bad_id)
    return result


def last_verification() -> AuditLog | None:
    """The newest verification's entry, `audit.verified` or `audit.tamper_detected`; a failure
    since the last check of the whole trail stays the answer until a check of as much of the
    trail (from the same month or an earlier one, or all of it) succeeds: the hourly check of
    recent months does not hide what the weekly check of the whole trail found."""
    verified = AuditLog.objects.filter(action="audit.verified").order_by("-id")
    failures = AuditLog.objects.filter(action="audit.tamper_detected").order_by("-id")
    whole = verified.exclude(metadata__has_key="since").values_list("id", flat=True).first()
    for failed in failures.filter(id__gt=whole or 0)[:100]:
        since = failed.metadata.get("since")
        later = verified.filter(id__gt=failed.id)
        covering = later.filter(metadata__since__lte=since) if since else later.none()
        if not covering.exists():
            return failed
    return verified.first() or failures.first()


def export_audit_logs(queryset, *, file_format: str, filters: dict, via: str):
    """Record the export (PCI DSS 10.2.1.3: access to the trail is itself audited), then hand
    back the streaming file."""
    details = {"format": file_format, "filters": filters}
    log("admin.audit_export", metadata=details)
    record_admin_action(via, action="admin.audit_export", details=details)
    return export.stream(queryset, file_format)
