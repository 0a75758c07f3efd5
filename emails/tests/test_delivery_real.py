"""The outbox with its real surroundings: a Redis broker that crashes, and a Celery worker
process on Redis delivering to the SMTP server."""

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction

from emails import services
from emails.models import EmailLog
from emails.tests.helpers import celery_publishing_to, dispatched_email_ids, wait_until

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-passphrase-9"
# The worker's broker gets a database of its own on REDIS_URL's server: the cache's database
# is flushed by every test (cache.clear()).
WORKER_BROKER_DB = 14


def sign_up(client, email: str):
    return client.post(
        "/api/auth/signup/", {"email": email, "password": PASSWORD, "name": "Ada"}, format="json"
    )


def test_signup_answers_at_once_while_the_broker_is_down_and_its_emails_go_out_later(
    smtp, redis_server, anon_client, django_capture_on_commit_callbacks
):
    with celery_publishing_to(redis_server.url()):
        with django_capture_on_commit_callbacks(execute=True):
            assert sign_up(anon_client, "before@example.com").status_code == 201
        assert dispatched_email_ids(redis_server.client()) == list(
            EmailLog.objects.order_by("pk").values_list("pk", flat=True)
        )

        redis_server.kill()  # a crash: the two task messages die with it
        for email in ["during@example.com", "later@example.com"]:
            started = time.monotonic()
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                response = sign_up(anon_client, email)
            elapsed = time.monotonic() - started

            assert response.status_code == 201
            assert elapsed < 2, f"signing up {email} took {elapsed:.1f} s, the broker down"
            assert len(callbacks) == 1  # the dispatch of both ran, and failed quietly
            assert sorted(
                EmailLog.objects.filter(to_email=email).values_list(
                    "template_name", "status", "attempts"
                )
            ) == [("email_verification", "queued", 0), ("welcome", "queued", 0)]
        assert smtp.received == []

        redis_server.start()
        assert services.redispatch_pending() == 6
        assert dispatched_email_ids(redis_server.client()) == list(
            EmailLog.objects.order_by("pk").values_list("pk", flat=True)
        )

    out = StringIO()
    call_command("send_queued_emails", stdout=out)

    assert "6 due: 6 sent" in out.getvalue()
    assert sorted(m["Message-ID"] for m in smtp.messages) == sorted(
        EmailLog.objects.values_list("message_id", flat=True)
    )
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == sorted(
        2 * ["before@example.com", "during@example.com", "later@example.com"]
    )


def database_url_of(settings_dict: dict) -> str:
    user = quote(settings_dict["USER"] or "", safe="")
    password = quote(settings_dict["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = settings_dict["HOST"] or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"


@pytest.fixture
def worker_broker(transactional_db):
    """A purged database of REDIS_URL's server, for the broker of a worker process that works
    on the test database: committed rows, on a server the process can reach."""
    if connection.vendor != "postgresql":
        pytest.skip("a worker process needs the test database on a server (PostgreSQL)")
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set: no Redis for a real worker")
    parts = urlsplit(settings.REDIS_URL)
    db = WORKER_BROKER_DB if parts.path != f"/{WORKER_BROKER_DB}" else WORKER_BROKER_DB - 1
    url = urlunsplit(parts._replace(path=f"/{db}"))
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def start_worker(worker_broker, smtp, tmp_path):
    """`celery worker` processes on the test database, sending through the test's SMTP
    server; stopped before the test database is flushed."""
    processes = []

    def start(*, pool: str = "solo", quiet: bool = True, **env_overrides):
        """`quiet`: without the workers' gossip, mingle and heartbeat (production has them)."""
        env = {
            **os.environ,
            "DATABASE_URL": database_url_of(connection.settings_dict),
            "CELERY_BROKER_URL": worker_broker,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USE_TLS": "false",
            "EMAIL_TIMEOUT": "5",
            "EMAIL_RETRY_BASE_SECONDS": "0.5",
            "EMAIL_RETRY_MAX_SECONDS": "1",
            **env_overrides,
        }
        log_path = tmp_path / f"worker{len(processes)}.log"
        # fmt: off
        command = [
            sys.executable, "-m", "celery", "-A", "invoicegen", "worker", f"--pool={pool}",
            "--concurrency=1", "--loglevel=INFO",
            f"--hostname=emails-test-{os.getpid()}-{len(processes)}@%h",
        ]
        if quiet:
            command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        # fmt: on
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=Path(settings.BASE_DIR), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        process.log_path = log_path
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def celery_worker(start_worker):
    return start_worker()


def pool_children(worker: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


@pytest.mark.django_db(transaction=True)
def test_celery_worker_on_redis_delivers_a_batch_once_each_retrying_by_itself(
    smtp, celery_worker, worker_broker
):
    smtp.answer("451 4.3.0 Try again in a moment", times=3)
    with celery_publishing_to(worker_broker), transaction.atomic():
        emails = [
            services.queue_email("welcome", to=f"user{n}@example.com", context={"name": "Ada"})
            for n in range(20)
        ]

    def all_sent_or_worker_gone():
        sent = EmailLog.objects.filter(status=EmailLog.Status.SENT).count()
        return sent == 20 or celery_worker.poll() is not None

    wait_until(all_sent_or_worker_gone, timeout=30, interval=0.2)
    log = celery_worker.log_path.read_text(errors="replace")[-3000:]
    assert EmailLog.objects.filter(status=EmailLog.Status.SENT).count() == 20, log
    assert smtp.wait_for(20, timeout=5)
    time.sleep(0.5)  # a duplicate would arrive about now
    assert len(smtp.received) == 20
    assert sorted(m["Message-ID"] for m in smtp.messages) == sorted(e.message_id for e in emails)
    # The three refused ones came back through the task's own retry: no sweeper ran.
    assert len(smtp.refused) == 3
    assert sorted(EmailLog.objects.values_list("attempts", flat=True)) == [1] * 17 + [2] * 3


@pytest.mark.django_db(transaction=True)
def test_email_of_a_worker_process_killed_mid_send_goes_out_once_when_its_lease_ends(
    smtp, start_worker, worker_broker
):
    """The pool's child dies (SIGKILL) in the middle of the SMTP dialogue: its message goes
    back to the broker, and the email goes out once its lease ends, not a lease later."""
    lease = 14  # over the task's time limit: EMAIL_SEND_TIMEOUT + 10
    worker = start_worker(
        pool="prefork", EMAIL_SEND_TIMEOUT="3", EMAIL_SENDING_LEASE_SECONDS=str(lease)
    )
    smtp.handler.stall_first_rcpt = 30
    with celery_publishing_to(worker_broker):
        email = services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})
    assert smtp.handler.rcpt_stalled.wait(timeout=30), worker.log_path.read_text()

    children = pool_children(worker)
    assert len(children) == 1
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    assert smtp.wait_for(1, timeout=lease + 10), worker.log_path.read_text()[-3000:]
    delay = time.monotonic() - killed_at
    assert delay < lease + 5, f"sent {delay:.0f} s after the kill (lease {lease} s)"
    time.sleep(1)  # a duplicate would arrive about now
    row = EmailLog.objects.get(pk=email.pk)
    assert (row.status, row.attempts) == ("sent", 2)
    assert [message["Message-ID"] for message in smtp.messages] == [row.message_id]
    assert worker.poll() is None  # the worker itself went on


@pytest.mark.django_db(transaction=True)
def test_a_worker_lives_through_its_broker_going_down_while_it_holds_a_retry(
    smtp, start_worker, redis_server
):
    """Redis crashes while the worker holds a task it has not acknowledged (a retry waiting
    for its time, as after a 4xx): once Redis is back the worker reconnects and takes new
    tasks. It must not exit (celery 5.7.0's worker did: it closed the broken connection after
    collecting it, and the close raised while giving the held task back)."""
    broker = redis_server.url()
    worker = start_worker(
        pool="prefork",
        quiet=False,  # gossip, mingle and heartbeat, as in production
        CELERY_BROKER_URL=broker,
        EMAIL_RETRY_BASE_SECONDS="30",
        EMAIL_RETRY_MAX_SECONDS="30",
    )
    smtp.answer("451 4.3.0 Try again later", times=1)
    with celery_publishing_to(broker):
        services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})

    def holds_a_retry():
        return worker.log_path.read_text(errors="replace").count("] received") >= 2

    assert wait_until(holds_a_retry, timeout=30), worker.log_path.read_text()[-3000:]
    redis_server.kill()
    time.sleep(3)  # the worker notices
    redis_server.start()
    with celery_publishing_to(broker):
        second = services.queue_email("welcome", to="bob@example.com", context={"name": "Bob"})

    def sent_or_worker_gone():
        return worker.poll() is not None or EmailLog.objects.get(pk=second.pk).status == "sent"

    wait_until(sent_or_worker_gone, timeout=60, interval=0.2)
    log = worker.log_path.read_text(errors="replace")[-4000:]
    assert worker.poll() is None, log
    assert EmailLog.objects.get(pk=second.pk).status == "sent", log


@pytest.mark.django_db(transaction=True)
def test_a_worker_with_json_logs_writes_each_line_once_as_json(smtp, start_worker, worker_broker):
    worker = start_worker(LOG_FORMAT="json")
    with celery_publishing_to(worker_broker), transaction.atomic():
        email = services.queue_email("welcome", to="ada@example.com", context={"name": "Ada"})

    def sent_or_worker_gone():
        email.refresh_from_db()
        return email.status == EmailLog.Status.SENT or worker.poll() is not None

    assert wait_until(sent_or_worker_gone, timeout=60), worker.log_path.read_text()
    worker.terminate()
    worker.wait(timeout=15)

    # Celery's banner is the command's own text on stdout; every log line is JSON.
    text = worker.log_path.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    received = [line for line in lines if line["message"].endswith("] received")]
    assert len(received) == 1, text
    assert received[0]["logger"].startswith("celery")
    assert not [line for line in text.splitlines() if "] received" in line and line[0] != "{"]
