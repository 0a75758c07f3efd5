"""What must hold after every scenario, read from the database (as the owner role), the mail
sink, the answers the load got and the processes running."""

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Count

from audit.models import AuditLog
from bench.soak.load import Answer, Expected
from bench.soak.topology import Topology
from emails.models import EmailLog

GRACE_SECONDS = 5.0  # after a fault ends, for the requests it caught in flight
TASK_SUCCEEDED = re.compile(r"INFO/(ForkPoolWorker-\d+)\] Task ([\w.]+)\[[^\]]+\] succeeded")
TASK_FAILED = re.compile(r"Task [\w.]+\[[^\]]+\] raised unexpected: (\w+)")


@dataclass
class Outcome:
    """One scenario's figures and, if it failed, why."""

    name: str
    started: float = field(default_factory=time.monotonic)
    window: tuple[float, float] | None = None  # the fault, from injection to its end
    allowed_duplicates: int = 0  # one per injected crash
    faulted: set[str] = field(default_factory=set)  # parts the scenario itself restarts
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fault(self, start: float, end: float | None = None) -> None:
        self.window = (start, end if end is not None else time.monotonic())

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Mark:
    """Where everything stood when a scenario started."""

    email_id: int
    audit_id: int
    undelivered: set[str]  # left over by an earlier scenario: not this one's to lose
    message_ids: Counter
    storm_access_log: int
    worker_logs: dict[str, int]
    processes: dict[str, tuple[int, ...]]


def fresh_connection() -> None:
    """The harness's own connection may have died with a restart of PostgreSQL."""
    connections.close_all()


def take_mark(topology: Topology) -> Mark:
    fresh_connection()
    pending, failed = undelivered_emails(topology)
    return Mark(
        email_id=EmailLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
        audit_id=AuditLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0,
        undelivered=pending | failed,
        message_ids=topology.sink.message_id_counts(),
        storm_access_log=topology.storm_access_log.stat().st_size,
        worker_logs={worker.name: worker.log_size() for worker in topology.workers},
        processes=topology.processes(),
    )


def undelivered_emails(topology: Topology) -> tuple[set[str], set[str]]:
    """Message-IDs of the outbox not delivered yet (queued, sending, or marked sent without
    the server having it), and of the rows that failed for good."""
    fresh_connection()
    received = topology.sink.message_id_counts()
    pending, failed = set(), set()
    for message_id, status in EmailLog.objects.values_list("message_id", "status").iterator():
        if status == EmailLog.Status.FAILED:
            failed.add(message_id)
        elif status != EmailLog.Status.SENT or not received[message_id]:
            pending.add(message_id)
    return pending, failed


def wait_settled(topology: Topology, *, timeout: float) -> bool:
    """Until nothing is pending in the outbox (True), or the timeout (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not undelivered_emails(topology)[0]:
                return True
        except Exception:  # the database still coming back
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def check_emails(topology: Topology, mark: Mark, outcome: Outcome) -> None:
    """No email lost: every email that was not undelivered already when the scenario started
    is sent and received; duplicates only as many as the scenario injected crashes."""
    pending, failed = undelivered_emails(topology)
    lost = (pending | failed) - mark.undelivered
    received = topology.sink.message_id_counts()
    statuses = EmailLog.objects.filter(pk__gt=mark.email_id).values_list("status", flat=True)
    copies = sum(n - 1 for n in received.values() if n > 1)
    duplicates = copies - sum(n - 1 for n in mark.message_ids.values() if n > 1)
    outcome.figures["emails"] = {
        "queued": len(statuses),
        "sent": sum(status == EmailLog.Status.SENT for status in statuses),
        "failed": len(failed - mark.undelivered),
        "lost": len(lost),
        "duplicated": duplicates,
        "undelivered_before": len(mark.undelivered),
    }
    if lost:
        outcome.failures.append(
            f"{len(lost)} email(s) lost ({len(failed - mark.undelivered)} failed, the rest "
            f"unsent or never received), e.g. {sorted(lost)[0]}"
        )
    if duplicates > outcome.allowed_duplicates:
        outcome.failures.append(
            f"{duplicates} duplicate email(s) received, {outcome.allowed_duplicates} allowed"
        )


def check_audit(expected: list[Expected], mark: Mark, outcome: Outcome) -> None:
    """One entry per committed action; at most one where the request got no clear answer."""
    fresh_connection()
    owed: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for entry in expected:
        owed[(entry.action, entry.resource_type, entry.resource_id)][0 if entry.certain else 1] += 1
    written = {
        (row["action"], row["resource_type"], row["resource_id"]): row["n"]
        for row in AuditLog.objects.filter(
            pk__gt=mark.audit_id, action__in={key[0] for key in owed}
        )
        .values("action", "resource_type", "resource_id")
        .annotate(n=Count("pk"))
    }
    wrong = [
        f"{action} {kind}:{pk} has {written.get((action, kind, pk), 0)} entries, "
        f"{certain} expected" + (f" (+{unsure} unsure)" if unsure else "")
        for (action, kind, pk), (certain, unsure) in owed.items()
        if not certain <= written.get((action, kind, pk), 0) <= certain + unsure
    ]
    outcome.figures["audit"] = {"actions": len(expected), "wrong": len(wrong)}
    if wrong:
        outcome.failures.append(f"{len(wrong)} action(s) without exactly one entry: {wrong[:3]}")


def check_verify(topology: Topology, outcome: Outcome) -> None:
    """The trail verifies, as the app role, against the checkpoints copied out of it."""
    copies = ["--checkpoints", str(topology.checkpoints)] if topology.checkpoints.exists() else []
    done = topology.manage("verify_audit_log", *copies)
    said = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    outcome.figures["verify_audit_log"] = {"ok": done.returncode == 0, "said": said[0]}
    if done.returncode != 0:
        outcome.failures.append(f"verify_audit_log failed: {said[0]}")


def check_answers(answers: list[Answer], outcome: Outcome) -> None:
    """5xx (or no answer) only inside the fault window, and no 4xx the load did not ask for."""
    start, end = outcome.window or (float("inf"), float("inf"))
    end += GRACE_SECONDS

    def inside(answer: Answer) -> bool:
        return answer.ended >= start and answer.started <= end

    errors = [a for a in answers if a.status == 0 or a.status >= 500]
    outside = [a for a in errors if not inside(a)]
    refused = [a for a in answers if 400 <= a.status < 500]
    outcome.figures["requests"] = {
        "total": len(answers),
        "5xx_inside": len(errors) - len(outside),
        "5xx_outside": len(outside),
        "4xx": len(refused),
        "by_status": dict(sorted(Counter(a.status for a in answers).items())),
    }
    if outside:
        outcome.failures.append(f"{len(outside)} 5xx outside the fault window: {_sample(outside)}")
    if outcome.window and not any(a.started > end and 200 <= a.status < 400 for a in answers):
        outcome.failures.append("no request succeeded after the fault: the API did not recover")
    if refused:
        outcome.failures.append(f"{len(refused)} unexpected 4xx: {_sample(refused)}")


def _sample(answers: list[Answer]) -> str:
    found = Counter(f"{a.status or 'no answer'} {a.method} {a.label}" for a in answers)
    return ", ".join(f"{text} x{n}" for text, n in found.most_common(3))


def check_processes(topology: Topology, mark: Mark, outcome: Outcome) -> None:
    """Recovery without restarting anything: every part but the faulted ones is still the
    process it was, and every part runs."""
    now = topology.processes()
    changed = [
        name
        for name, pids in now.items()
        if pids != mark.processes.get(name) and name not in outcome.faulted
    ]
    stopped = [name for name, pids in now.items() if None in pids]
    if changed:
        outcome.failures.append(f"restarted behind the harness's back: {', '.join(changed)}")
    if stopped:
        outcome.failures.append(f"not running: {', '.join(stopped)}")


def tasks_per_process(topology: Topology, mark: Mark) -> tuple[Counter, Counter]:
    """Tasks that succeeded since the mark, by pool process (the worker's log names it) and
    task, and the tasks that raised, by exception."""
    ran: Counter = Counter()
    failed: Counter = Counter()
    for worker in topology.workers:
        text = worker.log_text(mark.worker_logs[worker.name])
        for process, task in TASK_SUCCEEDED.findall(text):
            ran[(f"{worker.name}/{process}", task)] += 1
        failed.update(TASK_FAILED.findall(text))
    return ran, failed


def storm_requests_per_worker(topology: Topology, mark: Mark) -> Counter:
    """Requests each worker of the storm's gunicorn answered since the mark; with
    CONN_MAX_AGE=0 each one opened (and closed) a database connection of its own."""
    with topology.storm_access_log.open("rb") as log:
        log.seek(mark.storm_access_log)
        text = log.read().decode(errors="replace")
    return Counter(line.split(" ", 1)[0].strip("<>") for line in text.splitlines() if line)
