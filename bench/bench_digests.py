"""Digest emails on PostgreSQL: BENCH_DIGEST_USERS (10,000) users in eight time zones, each with
BENCH_DIGEST_PENDING (20) notifications of five types waiting for their daily digest, all due.
The beat task (`send_notification_digests`, sent to the workers as beat sends it) fans the users
out to two Celery worker processes on Redis, which write each digest and queue its email; the
emails then leave through the outbox to an aiosmtpd server on loopback.

Measured from the beat task's dispatch: seconds until every digest is written (target: under
120 s), and until every digest email reached the SMTP server. BENCH_ROUNDS (3) runs on fresh
notifications (the digests of the run before are removed, the table vacuumed and analyzed as
autovacuum would have it), each once the queue is idle; min and median.
"""

import datetime
import statistics
import time

from aiosmtpd.controller import Controller
from django.db import connection
from django.utils import timezone

from bench.bench_notifications import Sink, celery_workers
from bench.capture import User
from bench.common import env_int, free_port, print_table, scratch_database, write_results
from emails.models import EmailLog
from invoicegen import celery_app
from notifications import tasks
from notifications.models import Notification, NotificationDigest

USERS = env_int("BENCH_DIGEST_USERS", 10_000)
PENDING = env_int("BENCH_DIGEST_PENDING", 20)
ROUNDS = env_int("BENCH_ROUNDS", 3)
ZONES = [
    "UTC", "Europe/Paris", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
    "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney",
]  # fmt: skip
TYPES = ["invoice_paid", "invoice_sent", "invoice_finalized", "invoice_viewed", "admin_message"]


def setup() -> list[User]:
    users = [
        User(email=f"digest{n}@example.com", name=f"Reader {n}", timezone=ZONES[n % len(ZONES)])
        for n in range(USERS)
    ]
    return User.objects.bulk_create(users, batch_size=2000)


def fill(users: list[User]) -> None:
    """PENDING notifications a user, from three days ago: due in every zone."""
    NotificationDigest.objects.all().delete()
    Notification.objects.all().delete()
    since = timezone.now() - datetime.timedelta(days=3)
    rows = [
        Notification(
            user=user,
            type=TYPES[n % len(TYPES)],
            params={"invoice_number": f"INV-{n}", "client_name": "Globex", "total": "10.00",
                    "to": "ap@globex.test", "title": "Hello", "message": "News."},
            digest=Notification.Digest.DAILY,
            created_at=since + datetime.timedelta(minutes=n),
        )
        for user in users
        for n in range(PENDING)
    ]  # fmt: skip
    Notification.objects.bulk_create(rows, batch_size=5000)
    # As autovacuum leaves a table in service: the planner knows its 200,000 new rows (without
    # statistics it scans the table for each digest's claim, and each run is slower).
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Notification._meta.db_table}")


def wait_until(done, deadline: float) -> float:
    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic()


def queued_tasks() -> int:
    """Tasks waiting in the workers' queue on the Redis broker."""
    with celery_app.connection_for_write() as broker:
        return broker.default_channel.client.llen(celery_app.conf.task_default_queue)


def one_run(users: list[User], sink: Sink) -> dict:
    # A run starts on an idle queue: the emails of the run before are at the SMTP server, but
    # the deliveries they queued (one a row; a delivery sends the due rows along with its own)
    # are still draining, and the beat task would wait behind them.
    if wait_until(lambda: queued_tasks() == 0, deadline := time.monotonic() + 600) >= deadline:
        raise RuntimeError("the queue of the run before did not drain in 10 minutes")
    fill(users)
    received = sink.count
    started = time.monotonic()
    tasks.send_notification_digests.delay()
    deadline = started + 600
    written = wait_until(lambda: NotificationDigest.objects.count() >= USERS, deadline)
    mailed = wait_until(lambda: sink.count - received >= USERS, deadline)
    claimed = Notification.objects.filter(digested_in__isnull=False).count()
    return {
        "digests": NotificationDigest.objects.count(),
        "notifications_gathered": claimed,
        "emails_received_by_smtp": sink.count - received,
        "seconds_to_digests_written": round(written - started, 1),
        "seconds_to_emails_received": round(mailed - started, 1),
    }


def main() -> None:
    if connection.vendor != "postgresql":
        print("bench_digests needs PostgreSQL: set DATABASE_URL=postgres://...")
        return
    sink = Sink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with scratch_database():
            users = setup()
            with celery_workers(port):
                runs = []
                for index in range(ROUNDS):
                    runs.append(one_run(users, sink))
                    print(f"  run {index + 1}: {runs[-1]}")
            sent = EmailLog.objects.filter(template_name="notification_digest").count()
    finally:
        smtp.stop()
    written = [run["seconds_to_digests_written"] for run in runs]
    mailed = [run["seconds_to_emails_received"] for run in runs]
    results = {
        "users": USERS,
        "pending_each": PENDING,
        "rounds": ROUNDS,
        "workers": 2,
        "runs": runs,
        "digest_emails_in_outbox": sent,
        "seconds_to_digests_written_min": min(written),
        "seconds_to_digests_written_median": statistics.median(written),
        "seconds_to_emails_received_min": min(mailed),
        "seconds_to_emails_received_median": statistics.median(mailed),
    }
    print_table(
        f"Daily digests of {USERS:,} users x {PENDING} notifications, 2 Celery workers",
        ["measure", "min s", "median s"],
        [
            ["every digest written", min(written), statistics.median(written)],
            ["every digest email at the SMTP server", min(mailed), statistics.median(mailed)],
        ],
    )
    write_results("digests", results)
