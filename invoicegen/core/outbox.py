"""The outbox machinery, for anything sent to the outside world that must not be lost (emails
and webhooks).

A message is a row first, written in the caller's transaction, and handed to a worker once that
commits (a rolled-back change sends nothing). A worker takes the row with a one-statement claim
that holds a lease, so two workers, or a task delivered twice, never send it twice; a row whose
worker died is free again when the lease ends. Failures come back with exponential backoff and
jitter; a server's acceptance is remembered in the cache before the row is marked sent, so a
lost "sent" is not a second send. A sweeper re-dispatches whatever a lost task or a killed
worker left. Every send runs under a hard `Deadline`, shorter than the lease.

Each outbox reads its settings by prefix: `<PREFIX>_SENDING_LEASE_SECONDS`,
`<PREFIX>_MAX_ATTEMPTS`, `<PREFIX>_RETRY_BASE_SECONDS`, `<PREFIX>_RETRY_MAX_SECONDS`.
"""

import contextlib
import datetime
import heapq
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core import checks
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How long a server's acceptance is remembered, in case its "sent" is lost: far longer than
# any outage of the database that a lease's retry would meet.
ACCEPTANCE_MEMORY_SECONDS = 24 * 3600


class OutboxRow(models.Model):
    """A message waiting to go, going, gone or given up on. Times are the application's clock,
    like every time the outbox compares. A concrete row says, as `acceptance_key`, what
    identifies its message to the receiving side, the same at every attempt (an email's
    Message-ID)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        abstract = True


class _Dispatch:
    """The rows one transaction added to an outbox, handed to workers once it commits: a task
    for every `<PREFIX>_SEND_BATCH`-th of them, since a delivery takes its own row and that many
    due ones with it. A thousand rows in one transaction are twenty tasks, not a thousand that
    would mostly find their row sent and wait in the queue meanwhile. A row no delivery took
    (others were due first) is the sweeper's. Rows join the hand-over of their own savepoint,
    so that a savepoint rolled back takes its rows' hand-over with it, as Django's on_commit
    does."""

    def __init__(self, outbox: "Outbox", row_id: int):
        self.outbox = outbox
        self.row_ids = [row_id]
        self.done = False  # (a test's captured callbacks run, and stay registered)

    def __call__(self) -> None:
        self.done = True
        for row_id in self.row_ids[:: max(1, self.outbox.setting("SEND_BATCH"))]:
            self.outbox.dispatch(row_id)


@dataclass(frozen=True)
class Delivery:
    status: str | None  # None: someone else has the row, or it is not due
    retry_in: float | None = None


class Outbox:
    """One outbox: its row model, its settings prefix, and `hand_over(row_id)`, which queues
    the task that delivers one row."""

    def __init__(
        self, model: type[OutboxRow], *, settings_prefix: str, hand_over: Callable[[int], None]
    ):
        self.model = model
        self.prefix = settings_prefix
        self.hand_over = hand_over
        table = model._meta.db_table
        taking = (
            f"UPDATE {table} "  # noqa: S608 (a table name)
            "SET status = 'sending', claimed_at = %(now)s, attempts = attempts + 1"
        )
        self._claim_sql = f"""
            {taking}
            WHERE id = %(id)s AND (
                (status = 'queued' AND next_attempt_at <= %(now)s)
                OR (status = 'sending' AND claimed_at < %(lease_over)s)
            )
            RETURNING *
        """
        self._claim_more_sql = f"""
            {taking}
            WHERE id IN (
                SELECT id FROM {table}
                WHERE status = 'queued' AND next_attempt_at <= %(now)s AND id <> %(id)s
                ORDER BY next_attempt_at LIMIT %(more)s {{skip_locked}}
            )
            RETURNING *
        """  # noqa: S608 (a table name)

    def setting(self, name: str):
        return getattr(settings, f"{self.prefix}_{name}")

    @property
    def lease(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.setting("SENDING_LEASE_SECONDS"))

    # Writing and handing over

    def add(self, row: OutboxRow) -> OutboxRow:
        """Store the row in the caller's transaction; a worker gets it once that commits."""
        row.save()
        connection = transaction.get_connection()
        if not connection.in_atomic_block:
            self.dispatch(row.pk)
            return row
        savepoints = set(connection.savepoint_ids)
        # The newest first: a transaction adding many rows finds its hand-over at once.
        for registered_in, callback, _ in reversed(connection.run_on_commit):
            if (
                isinstance(callback, _Dispatch)
                and callback.outbox is self
                and registered_in == savepoints
                and not callback.done
            ):
                callback.row_ids.append(row.pk)
                return row
        transaction.on_commit(_Dispatch(self, row.pk))
        return row

    def dispatch(self, row_id: int) -> None:
        """Hand the row to a worker. A broker that is down loses nothing: the row is queued
        and the sweeper hands it over later."""
        try:
            self.hand_over(row_id)
        except Exception:  # the broker's errors are many; the caller must not fail for any
            logger.warning("%s %s not dispatched (broker unavailable)", self.prefix, row_id)

    def pending(self):
        """Rows due for a (re)try, and rows stuck in `sending` past their lease."""
        now = timezone.now()
        return self.model.objects.filter(
            Q(status=OutboxRow.Status.QUEUED, next_attempt_at__lte=now)
            | Q(status=OutboxRow.Status.SENDING, claimed_at__lt=now - self.lease)
        ).order_by("id")

    def redispatch_pending(self, *, limit: int = 1000) -> int:
        """The sweeper: hand every pending row to a worker again (the claim makes a duplicate
        harmless)."""
        ids = list(self.pending().values_list("pk", flat=True)[:limit])
        for row_id in ids:
            self.dispatch(row_id)
        return len(ids)

    def retry_failed(self, row: OutboxRow) -> bool:
        """Put a failed row back in the queue now; False if it had not failed."""
        retried = self.model.objects.filter(pk=row.pk, status=OutboxRow.Status.FAILED).update(
            status=OutboxRow.Status.QUEUED, next_attempt_at=timezone.now(), attempts=0
        )
        if retried:
            transaction.on_commit(partial(self.dispatch, row.pk))
        return bool(retried)

    # Delivering

    def deliver(
        self,
        row_id: int,
        *,
        send: Callable[[OutboxRow], None],
        is_permanent: Callable[[Exception], bool],
        on_failed: Callable[[OutboxRow, str], None] | None = None,
        batch: int = 1,
    ) -> Delivery:
        """Send the row, and up to `batch - 1` more that are due and no other worker holds, at
        most once each where that can be known; answer for the row. `send` raises on failure;
        `is_permanent` tells a final refusal from a temporary one; `on_failed`, if given, runs
        in the transaction that marks a row failed (to record why). The batch shares one claim and
        one "sent" statement (a commit each, not two per row); each row's acceptance is
        remembered as it goes. No send of the batch starts that could end past the task's
        time limit: what is left is handed back, due at once."""
        rows = self._claim(row_id, more=batch - 1)
        if not rows or rows[0].pk != row_id:
            come_back_in = self._come_back_in(row_id)
        outcomes, sent, handed_back = {}, [], []
        started = time.monotonic()
        for index, row in enumerate(rows):
            if index and time.monotonic() - started > self.setting("SEND_BATCH_SECONDS"):
                handed_back = self._hand_back(rows[index:])
                break
            if row.attempts > 1 and self._accepted_before(row):
                sent.append(row)
                continue
            try:
                send(row)
            except Exception as error:  # every failure of a send ends the same way
                outcomes[row.pk] = self._record_failure(row, error, is_permanent(error), on_failed)
                continue
            self._remember_acceptance(row)
            sent.append(row)
        marked = self._mark_sent(sent)
        # The other rows it put back in the queue get a task of their own: theirs may have come
        # and gone while this delivery held them. It waits for a retry's time (_come_back_in).
        retried = [pk for pk, outcome in outcomes.items() if outcome.retry_in is not None]
        for pk in [*retried, *handed_back]:
            if pk != row_id:
                self.dispatch(pk)
        if not rows or rows[0].pk != row_id:
            return Delivery(None, retry_in=come_back_in)
        if row_id in outcomes:
            return outcomes[row_id]
        # Not marked: taken back meanwhile (_mark_sent has logged it).
        return Delivery(OutboxRow.Status.SENT if row_id in marked else None)

    def _claim(self, row_id: int, *, more: int = 0) -> list[OutboxRow]:
        """The row first (if due and free), then up to `more` other due rows no worker holds,
        one more if the row itself was not free (a batch is handed over as one task per batch
        of rows, _Dispatch: whatever the order of the claims, a batch's worth each), in one
        transaction."""
        now = timezone.now()
        params = {"id": row_id, "now": now, "lease_over": now - self.lease, "more": more}
        with transaction.atomic():
            rows = list(self.model.objects.raw(self._claim_sql, params))
            if more:
                params["more"] = more if rows else more + 1
                sql = self._claim_more_sql.format(skip_locked=_skip_locked_sql())
                rows += list(self.model.objects.raw(sql, params))
        return rows

    def _come_back_in(self, row_id: int) -> float | None:
        """Seconds until a row this delivery could not claim can be claimed: one another worker
        holds when that lease ends (a worker killed mid-send leaves it `sending`), one queued
        for a later retry when that is due (its task ran early, or a batch that failed to send
        it queued it again); a second more for the clocks. None for a row sent, failed or gone."""
        row = (
            self.model.objects.filter(pk=row_id)
            .values_list("status", "claimed_at", "next_attempt_at")
            .first()
        )
        if row is None or row[0] not in (OutboxRow.Status.SENDING, OutboxRow.Status.QUEUED):
            return None
        status, claimed_at, next_attempt_at = row
        due = claimed_at + self.lease if status == OutboxRow.Status.SENDING else next_attempt_at
        return max((due - timezone.now()).total_seconds(), 0) + 1

    def _held(self, row: OutboxRow):
        """The row, as long as this delivery still holds its claim: one that outlived its lease
        must not overwrite what the next delivery did."""
        return self.model.objects.filter(
            pk=row.pk, status=OutboxRow.Status.SENDING, claimed_at=row.claimed_at
        )

    def _let_go(self, row: OutboxRow) -> Delivery:
        logger.warning("%s %s was taken back before this delivery ended", self.prefix, row.pk)
        return Delivery(None)

    def _mark_sent(self, rows: list[OutboxRow]) -> set[int]:
        """Mark the rows sent that this delivery still holds (all claimed at one moment), in one
        statement; the ids it marked."""
        if not rows:
            return set()
        held = {"status": OutboxRow.Status.SENDING, "claimed_at": rows[0].claimed_at}
        ids = [row.pk for row in rows]
        marked = self.model.objects.filter(pk__in=ids, **held).update(
            status=OutboxRow.Status.SENT, sent_at=Now(), last_error=""
        )
        if marked == len(rows):
            return set(ids)
        ours = {**held, "status": OutboxRow.Status.SENT}
        marked = set(self.model.objects.filter(pk__in=ids, **ours).values_list("pk", flat=True))
        for row in rows:
            if row.pk not in marked:
                self._let_go(row)
        return marked

    def _hand_back(self, rows: list[OutboxRow]) -> list[int]:
        """Claimed rows this delivery has no time left to send, in one statement (those it
        still holds): due again at once, their attempt not counted. Their ids."""
        held = {"status": OutboxRow.Status.SENDING, "claimed_at": rows[0].claimed_at}
        ids = [row.pk for row in rows]
        self.model.objects.filter(pk__in=ids, **held).update(
            status=OutboxRow.Status.QUEUED, attempts=F("attempts") - 1
        )
        return ids

    def _remember_acceptance(self, row: OutboxRow) -> None:
        try:
            cache.set(row.acceptance_key, True, timeout=ACCEPTANCE_MEMORY_SECONDS)
        except (RedisError, OSError):  # if its "sent" is lost too, the lease sends it again
            logger.warning("%s %s accepted; no cache to remember it", self.prefix, row.pk)

    def _accepted_before(self, row: OutboxRow) -> bool:
        try:
            return bool(cache.get(row.acceptance_key))
        except (RedisError, OSError):  # no cache: send again rather than lose the message
            logger.warning("%s %s: no cache to say whether it went", self.prefix, row.pk)
            return False

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff, with jitter."""
        base = self.setting("RETRY_BASE_SECONDS") * 2 ** (attempts - 1)
        return jittered(min(base, self.setting("RETRY_MAX_SECONDS")))

    def _record_failure(self, row, error: Exception, permanent: bool, on_failed) -> Delivery:
        reason = f"{type(error).__name__}: {error}"[:2000]
        if permanent or row.attempts >= self.setting("MAX_ATTEMPTS"):
            with transaction.atomic():
                if not self._held(row).update(status=OutboxRow.Status.FAILED, last_error=reason):
                    return self._let_go(row)
                if on_failed:
                    on_failed(row, reason)
            return Delivery(OutboxRow.Status.FAILED)
        delay = self.retry_delay(row.attempts)
        queued = self._held(row).update(
            status=OutboxRow.Status.QUEUED,
            next_attempt_at=timezone.now() + datetime.timedelta(seconds=delay),
            last_error=reason,
        )
        if not queued:
            return self._let_go(row)
        return Delivery(OutboxRow.Status.QUEUED, retry_in=delay)


def lease_check(prefix: str, time_limit: Callable[[], int], *, check_id: str):
    """A system check (register it in the app's ready()): a lease shorter than a delivery
    task may take lets a second worker send the row again. `time_limit()`: the task's."""

    def check(app_configs, **kwargs):
        lease, limit = getattr(settings, f"{prefix}_SENDING_LEASE_SECONDS"), time_limit()
        if lease > limit:
            return []
        return [
            checks.Error(
                f"{prefix}_SENDING_LEASE_SECONDS ({lease}) must exceed the delivery task's "
                f"time limit ({limit} s: {prefix}_SEND_TIMEOUT or {prefix}_TIMEOUT, "
                f"+ {prefix}_SEND_BATCH_SECONDS + 10).",
                hint=f"Raise {prefix}_SENDING_LEASE_SECONDS or lower the send's timeout.",
                id=check_id,
            )
        ]

    return check


def jittered(seconds: float) -> float:
    """Within a quarter of `seconds`, at random: retries spread out, so that a recovering
    server is not hit all at once."""
    return seconds * random.uniform(0.75, 1.25)


def run_delivery(task, delivery: Delivery) -> str | None:
    """The end of a delivery task: a temporary failure comes back after its backoff, a row
    another worker holds when that lease ends (the row keeps its own schedule too, so the
    sweeper retries it if this message is lost)."""
    if delivery.retry_in is not None and not task.request.is_eager:
        raise task.retry(countdown=delivery.retry_in, max_retries=None)
    return delivery.status


class DeadlineExceeded(ConnectionError):
    """Temporary, like any lost connection: the row is retried with backoff."""


class Deadline:
    """A hard deadline on one call to the outside world. Socket timeouts bound each read, not
    a call: a server that trickles a byte every few seconds never trips them. When `seconds`
    pass, the deadline shuts down the socket it guards, which ends any read, write or TLS
    handshake in progress at once.

    It guards a duplicate of the TCP socket's descriptor, taken as soon as the socket is
    connected (`guard()`): TLS wraps (and detaches) the original, but a shutdown of the
    duplicate ends the connection under any wrapping."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._socket = None
        self._over = False
        self._lock = threading.Lock()

    def __enter__(self):
        _watch.add(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._over = True
            self._socket = None

    def guard(self, sock: socket.socket | None) -> None:
        """Cut this socket at the deadline (one already connected raises at once if over)."""
        with self._lock:
            self._socket = sock
            if self.expired and sock is not None:
                raise DeadlineExceeded(f"no answer within {self.seconds} s")

    def expire(self) -> None:
        with self._lock:
            if self._over:  # the call ended before: its connection lives on
                return
            self.expired = True
            if self._socket is not None:
                with contextlib.suppress(OSError):  # already closed
                    self._socket.shutdown(socket.SHUT_RDWR)


class _Watch:
    """The one thread of a process that expires its deadlines, soonest first (a timer thread
    per call would start a thread for every send). Started on first use; a forked child starts
    its own (a fork keeps no thread, and maybe a held lock: the child begins afresh)."""

    def __init__(self):
        self._due: list[tuple[float, int, Deadline]] = []  # a heap; ended calls wait their turn
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline, when: float) -> None:
        with self._changed:
            heapq.heappush(self._due, (when, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            elif self._due[0][2] is deadline:  # sooner than what the thread waits for
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                left = self._due[0][0] - time.monotonic() if self._due else None
                if left is None or left > 0:
                    self._changed.wait(left)
                    continue
                deadline = heapq.heappop(self._due)[2]
            try:
                deadline.expire()
            except Exception:  # the thread must live on for the other deadlines
                logger.exception("A deadline could not cut its call")


_watch = _Watch()
os.register_at_fork(after_in_child=_watch.__init__)


def _skip_locked_sql() -> str:
    """Concurrent claims pass over the rows another claim is taking (PostgreSQL); SQLite runs
    one writer at a time."""
    if connection.features.has_select_for_update_skip_locked:
        return "FOR UPDATE SKIP LOCKED"
    return ""
