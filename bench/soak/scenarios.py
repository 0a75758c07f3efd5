"""The scenarios, one fault at a time under a running load, and what each adds to the common
checks (no email lost, duplicates only per injected crash, one audit entry per committed
action, a verified trail, 5xx only inside the fault window, nothing restarted)."""

import os
import signal
import statistics
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from bench.soak import checks, webhook_scenarios, websocket_scenarios
from bench.soak.checks import Mark, Outcome
from bench.soak.load import Account, Customer, Load, Recorder
from bench.soak.smtp import SLOW_BYTE_SECONDS
from bench.soak.topology import Topology, pid_of_connection, rss_kib
from emails import services as emails
from emails.models import EmailLog
from emails.tests.helpers import celery_publishing_to, wait_until
from invoicegen.billing.tasks import expire_subscriptions

CUSTOMERS = 3
PACE_SECONDS = 1.5  # between two iterations of a customer (about ten requests each)
STORM_TARGET = 2000  # reconnects of one web worker, tasks of one pool process
STORM_TASKS = 4400  # two pool processes at concurrency 1: each runs more than 2,000
KILLED_EMAIL_RETRY_SECONDS = 60  # the product's promise: within a minute, not a lease


@dataclass
class Run:
    topology: Topology
    load: Load
    recorder: Recorder
    short: bool

    def seconds(self, full: float, *, short: float) -> float:
        return short if self.short else full

    @property
    def proxy(self):
        return self.topology.proxy

    def queue_emails(self, count: int, kind: str) -> list[str]:
        """Emails written to the outbox as an app writes them, dispatched after commit to the
        workers; returns their Message-IDs."""
        checks.fresh_connection()
        with celery_publishing_to(self.topology.env["REDIS_URL"]), transaction.atomic():
            return [
                emails.queue_email(
                    "welcome", to=f"{kind}-{self.load.run}-{n}@example.com", context={"name": kind}
                ).message_id
                for n in range(count)
            ]

    def recovery_seconds(self) -> float:
        """Long enough for a lease to end and the sweeper to come by twice."""
        lease = settings.EMAIL_SENDING_LEASE_SECONDS
        sweep = getattr(settings, "EMAIL_SWEEP_INTERVAL_SECONDS", 60)
        return min(lease + 2 * sweep + 30, self.seconds(180, short=100))


def prepare(run: Run) -> None:
    """The staff member and the customers: signed up, verified through the emailed link,
    logged in, on the business plan (unverified or free accounts may not send as much)."""
    load, topology = run.load, run.topology
    staff = Account(f"staff-{load.run}@example.com")
    made = topology.manage(
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_EMAIL=staff.email,
        DJANGO_SUPERUSER_NAME="Soak Staff",
        DJANGO_SUPERUSER_PASSWORD=load.password,
    )
    if made.returncode != 0:
        raise RuntimeError(f"createsuperuser failed: {made.stderr or made.stdout}")
    if not load.log_in(staff):
        raise RuntimeError("the staff member cannot log in")
    load.staff = staff
    accounts = [load.sign_up() for _ in range(CUSTOMERS)]
    if None in accounts:
        raise RuntimeError("signing up failed: see the gunicorn log")
    for account in accounts:
        if not wait_until(lambda a=account: load.verify(a) is not None, timeout=60, interval=0.5):
            raise RuntimeError(f"no verification email for {account.email} within 60 s")
        if not (account.token and load.subscribe(account)):
            raise RuntimeError(f"{account.email} could not be verified, log in and subscribe")
        load.customers.append(Customer(account))


def play(run: Run, name: str, scenario: Callable[[Run, Outcome, Mark], None]) -> Outcome:
    """Load, fault, end of the fault, recovery, then the checks."""
    print(f"\n== {name}", flush=True)
    checks.wait_settled(run.topology, timeout=30)  # what is in flight is no fault's doing
    mark = checks.take_mark(run.topology)
    outcome = Outcome(name)
    run.recorder.scenario = name
    run.load.start(pace=PACE_SECONDS)
    try:
        scenario(run, outcome, mark)
        # The load goes on past the grace after the fault: the API must be back by itself.
        time.sleep(checks.GRACE_SECONDS + run.seconds(10, short=3))
    except Exception as error:  # the harness's own failure: reported, and the run goes on
        traceback.print_exc()
        outcome.failures.append(f"harness error: {type(error).__name__}: {error}")
    finally:
        run.load.stop()
    recovery = run.recovery_seconds()
    settled = checks.wait_settled(run.topology, timeout=recovery)
    run.load.drain()
    settled = checks.wait_settled(run.topology, timeout=30 if settled else 5) and settled
    outcome.figures["recovered"] = settled
    outcome.figures["seconds"] = round(time.monotonic() - outcome.started, 1)
    if outcome.window:
        outcome.figures["fault_seconds"] = round(outcome.window[1] - outcome.window[0], 1)
    answers, expected, problems = run.recorder.of(name)
    checks.check_emails(run.topology, mark, outcome)
    checks.check_audit(expected, mark, outcome)
    checks.check_verify(run.topology, outcome)
    checks.check_answers(answers, outcome)
    if problems:
        outcome.failures.append(f"{len(problems)} answer(s) the load could not read: {problems[0]}")
    checks.check_processes(run.topology, mark, outcome)
    if not settled:
        outcome.failures.append(f"the outbox did not settle within {recovery:.0f} s of the end")
    for failure in outcome.failures:
        print(f"   FAIL {failure}", flush=True)
    print(f"   {'pass' if outcome.passed else 'FAIL'} in {outcome.figures['seconds']:.0f} s")
    return outcome


def baseline(run: Run, outcome: Outcome, mark: Mark) -> None:
    """No fault: the harness's own yardstick (no 5xx, no duplicate)."""
    time.sleep(run.seconds(20, short=10))


def reconnect_storm(run: Run, outcome: Outcome, mark: Mark) -> None:
    """More than 2,000 requests, each a new database connection, through one web worker
    (of a gunicorn of its own, while the load goes on at the main one)."""
    gunicorn = run.topology.storm_gunicorn
    memory_before = {pid: rss_kib(pid) for pid in gunicorn.children()}

    def enough() -> bool:
        counts = checks.storm_requests_per_worker(run.topology, mark)
        return max(counts.values(), default=0) > STORM_TARGET

    sent = run.load.hammer(
        run.topology.ports.storm,
        "/api/notifications/unread-count/",
        threads=3,
        enough=enough,
        max_requests=3 * STORM_TARGET,
        seconds=run.seconds(240, short=120),
    )
    counts = checks.storm_requests_per_worker(run.topology, mark)
    answers = run.recorder.of(outcome.name)[0]
    storm = [a for a in answers if a.label == "/api/notifications/unread-count/"]
    outcome.figures["storm_requests"] = sent
    outcome.figures["reconnects_per_web_worker"] = dict(counts.most_common())
    outcome.figures["rss_kib"] = {
        pid: {"before": before, "after": rss_kib(pid)} for pid, before in memory_before.items()
    }
    outcome.figures["median_ms_first_500"] = _median_ms(storm[:500])
    outcome.figures["median_ms_last_500"] = _median_ms(storm[-500:])
    busiest = max(counts.values(), default=0)
    if busiest <= STORM_TARGET:
        outcome.failures.append(
            f"no web worker reached {STORM_TARGET} reconnects (busiest: {busiest})"
        )


def _median_ms(answers) -> float | None:
    if not answers:
        return None
    return round(statistics.median(a.ended - a.started for a in answers) * 1000, 1)


def task_storm(run: Run, outcome: Outcome, mark: Mark) -> None:
    """More than 2,000 tasks through one pool process, each a new database connection, every
    one succeeding, while the load's emails go through the same workers. The task is the
    product's cheapest that touches the database (subscription expiry), so that the storm
    costs seconds, not the minutes of as many emails."""
    started = time.monotonic()
    with celery_publishing_to(run.topology.env["REDIS_URL"]):
        for _ in range(STORM_TASKS):
            expire_subscriptions.delay()
    queued = time.monotonic()

    def storm_ran() -> int:
        ran, failed = checks.tasks_per_process(run.topology, mark)
        storm = sum(n for (_, task), n in ran.items() if task == expire_subscriptions.name)
        return storm + sum(failed.values())

    finished = wait_until(
        lambda: storm_ran() >= STORM_TASKS, timeout=run.seconds(300, short=150), interval=2
    )
    seconds = time.monotonic() - started
    ran, failed = checks.tasks_per_process(run.topology, mark)
    per_process, per_task = Counter(), Counter()
    for (process, task), n in ran.items():
        per_process[process] += n
        per_task[task] += n
    outcome.figures.update(
        storm_tasks=STORM_TASKS,
        queueing_seconds=round(queued - started, 1),
        storm_seconds=round(seconds, 1),
        tasks_per_second=round(STORM_TASKS / seconds, 1),
        tasks_per_pool_process=dict(per_process),
        tasks_by_name=dict(per_task),
        failed_tasks=dict(failed),
    )
    busiest = max(per_process.values(), default=0)
    if not finished:
        outcome.failures.append(f"the storm's tasks did not all run in {seconds:.0f} s")
    if busiest <= STORM_TARGET:
        outcome.failures.append(f"no pool process ran {STORM_TARGET} tasks (busiest: {busiest})")
    if failed:
        outcome.failures.append(f"{sum(failed.values())} task(s) raised: {dict(failed)}")


def smtp_down(run: Run, outcome: Outcome, mark: Mark) -> None:
    """The mail server refuses connections for a minute, then comes back."""
    start = time.monotonic()
    run.proxy.go_down()
    try:
        time.sleep(run.seconds(60, short=15))
    finally:
        run.proxy.go_normal()
        outcome.fault(start)


def smtp_slow(run: Run, outcome: Outcome, mark: Mark) -> None:
    """One connection to the mail server trickles a byte every 5 s for longer than a send's
    deadline: that send is abandoned at the deadline and retried, the other worker keeps
    delivering meanwhile, and nothing goes out twice."""
    deadline = int(run.topology.env["EMAIL_SEND_TIMEOUT"])
    seconds = max(2.5 * deadline, 4 * SLOW_BYTE_SECONDS)
    received_before = len(run.topology.sink.received)
    longest = 0.0
    start = time.monotonic()
    run.proxy.go_slow(connections=1)
    try:
        while time.monotonic() < start + seconds:
            longest = max(longest, _longest_send_seconds())
            time.sleep(1)
    finally:
        run.proxy.go_normal()
        outcome.fault(start)
    slowed = run.proxy.slowed_connections()
    outcome.figures["longest_send_seconds"] = round(longest, 1)
    outcome.figures["delivered_meanwhile"] = len(run.topology.sink.received) - received_before
    outcome.figures["slow_connections"] = [
        {
            "held_seconds": round((c.closed_at or outcome.window[1]) - c.opened_at, 1),
            "ended_by": c.closed_by or "the server's recovery",
        }
        for c in slowed
    ]
    if not slowed:
        outcome.failures.append("no connection reached the slow server: nothing was injected")
    elif longest > deadline + checks.GRACE_SECONDS:
        outcome.failures.append(
            f"a send held its email {longest:.0f} s in `sending` although EMAIL_SEND_TIMEOUT is "
            f"{deadline} s: the slow server was not cut off"
        )
    if not outcome.figures["delivered_meanwhile"]:
        outcome.failures.append("no email was delivered while one connection was stalled")


def _longest_send_seconds() -> float:
    checks.fresh_connection()
    oldest = EmailLog.objects.filter(status=EmailLog.Status.SENDING).aggregate(
        oldest=Min("claimed_at")
    )["oldest"]
    return (timezone.now() - oldest).total_seconds() if oldest else 0.0


def _hold_an_acceptance(run: Run, kind: str, outcome: Outcome):
    """A batch queued, and the server's "accepted" for one of its messages held back: the
    moment to crash something. None (and a failure) if no message got that far."""
    run.proxy.hold_next_acceptance()
    run.queue_emails(30, kind)
    if run.proxy.held.wait(timeout=30):
        return run.proxy.held_connection
    run.proxy.release()
    outcome.failures.append("no email reached the mail server within 30 s: nothing was injected")
    return None


def worker_kill(run: Run, outcome: Outcome, mark: Mark) -> None:
    """A pool process SIGKILLed mid-send (the server has the message, the worker never hears
    so): its email goes out again within a minute, at most once more."""
    kills = []
    for attempt in range(1 if run.short else 2):
        connection = _hold_an_acceptance(run, f"kill{attempt}", outcome)
        if connection is None:
            break
        pools = {pid: w for w in run.topology.workers for pid in w.children()}
        pid = pid_of_connection(connection.client_port, run.proxy.port, pools)
        if pid is None:
            run.proxy.release()
            outcome.failures.append("the held connection belongs to no pool process")
            break
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        run.proxy.release()
        outcome.faulted.add(f"{pools[pid].name} children")
        retried = wait_until(
            lambda m=connection.message_id: EmailLog.objects.filter(
                message_id=m, status=EmailLog.Status.SENT
            ).exists(),
            timeout=KILLED_EMAIL_RETRY_SECONDS + 30,
            interval=0.5,
        )
        seconds = round(time.monotonic() - killed_at, 1)
        kills.append({"worker": pools[pid].name, "sent_again_after_seconds": seconds})
        outcome.fault(outcome.window[0] if outcome.window else killed_at)
        if not retried or seconds > KILLED_EMAIL_RETRY_SECONDS:
            outcome.failures.append(
                f"the killed worker's email was {'sent' if retried else 'still unsent'} "
                f"{seconds:.0f} s after the kill (promised: within {KILLED_EMAIL_RETRY_SECONDS} s;"
                f" EMAIL_SENDING_LEASE_SECONDS is {settings.EMAIL_SENDING_LEASE_SECONDS})"
            )
    outcome.allowed_duplicates = len(kills)
    outcome.figures["kills"] = kills


def redis_down(run: Run, outcome: Outcome, mark: Mark) -> None:
    """Redis (broker and cache) killed for 30 s: requests still answer, and the sweeper
    sends what the lost messages would have."""
    start = time.monotonic()
    run.topology.redis.kill()
    outcome.faulted.add("redis")
    try:
        time.sleep(run.seconds(30, short=10))
    finally:
        run.topology.redis.start()
        outcome.fault(start)


def postgres_restart(run: Run, outcome: Outcome, mark: Mark) -> None:
    """PostgreSQL stopped (fast) just after the mail server accepted a message and before
    its worker could mark it sent, then started again: the API answers JSON 503s with
    Retry-After meanwhile, and the email goes out exactly once."""
    connection = _hold_an_acceptance(run, "restart", outcome)
    start = time.monotonic()
    outcome.faulted.add("postgres")
    try:
        run.topology.postgres.stop("fast")
        run.proxy.release()
        time.sleep(run.seconds(10, short=5))
    finally:
        run.proxy.release()
        run.topology.postgres.start()
        outcome.fault(start)
    if connection is not None:
        outcome.figures["accepted_before_the_restart"] = connection.message_id
    answers = run.recorder.of(outcome.name)[0]
    during = [a for a in answers if a.started >= start and a.ended <= outcome.window[1]]
    errors = [a for a in during if a.status == 0 or a.status >= 500]
    wrong = [
        a
        for a in errors
        if a.status != 503
        or not a.retry_after
        or (a.label.startswith("/api/") and a.content_type != "application/json")
    ]
    outcome.figures["answered_during_outage"] = len(during)
    outcome.figures["503_with_retry_after"] = len(errors) - len(wrong)
    if not during:
        outcome.failures.append("no request was answered while PostgreSQL was down")
    if wrong:
        outcome.failures.append(
            f"{len(wrong)} error answer(s) were not JSON 503 with Retry-After: "
            + ", ".join(
                f"{a.status or 'no answer'} {a.content_type or '-'} {a.method} {a.label}"
                for a in wrong[:3]
            )
        )


FULL = [
    ("baseline", baseline),
    ("reconnect_storm", reconnect_storm),
    ("task_storm", task_storm),
    ("smtp_down", smtp_down),
    ("smtp_slow", smtp_slow),
    ("worker_kill", worker_kill),
    ("redis_down", redis_down),
    ("postgres_restart", postgres_restart),
    ("webhook_worker_kill", webhook_scenarios.webhook_worker_kill),
    ("daphne_restart", websocket_scenarios.daphne_restart),
]
SHORT = [
    "reconnect_storm",
    "task_storm",
    "worker_kill",
    "smtp_down",
    "webhook_worker_kill",
    "daphne_restart",
]
