"""The real parts the outbox talks to: an SMTP server (aiosmtpd) on loopback, a redis-server
as a broker, and the Celery app pointed at a broker for a test."""

import asyncio
import base64
import datetime
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import kombu.pools
import redis
from aiosmtpd.controller import Controller
from django.utils import timezone

from emails.models import EmailLog
from invoicegen import celery_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_redis_caches() -> dict:
    """CACHES whose Redis nobody listens to: a cache that is down."""
    return {
        "default": {
            "BACKEND": "invoicegen.core.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


def make_due(*emails: EmailLog) -> None:
    """Skip the backoff: the schedule is a column, moved through the ORM."""
    EmailLog.objects.filter(pk__in=[email.pk for email in emails]).update(
        next_attempt_at=timezone.now() - datetime.timedelta(seconds=1)
    )


def stuck_in_sending(email: EmailLog, *, seconds_ago: float) -> None:
    """What a worker killed mid-send leaves: the row claimed, never finished."""
    EmailLog.objects.filter(pk=email.pk).update(
        status=EmailLog.Status.SENDING,
        attempts=1,
        claimed_at=timezone.now() - datetime.timedelta(seconds=seconds_ago),
    )


def stored_values(email: EmailLog) -> str:
    """Everything the outbox row holds, as text: a secret must be in none of it."""
    return " ".join(str(getattr(email, f.attname)) for f in EmailLog._meta.concrete_fields)


def reload(email: EmailLog) -> EmailLog:
    return EmailLog.objects.get(pk=email.pk)


def wait_until(condition, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: tuple  # the client's address and port: one per connection


@dataclass
class Reply:
    """An answer the server gives instead of accepting, at one stage of the dialogue."""

    text: str
    stage: str  # "RCPT" or "DATA"
    to: str | None  # only for this recipient; None: any
    times: int | None  # None: every time


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    after_accept: Callable[[], None] | None = None  # runs before the "250" goes back
    stall_first_rcpt: float = 0  # seconds the first RCPT waits: a worker caught mid-send
    rcpt_stalled: threading.Event = field(default_factory=threading.Event)

    def _reply_for(self, stage: str, recipients: list[str]) -> str | None:
        with self.lock:
            for reply in self.replies:
                if reply.stage != stage or (reply.to is not None and reply.to not in recipients):
                    continue
                if reply.times is not None:
                    if reply.times == 0:
                        continue
                    reply.times -= 1
                self.refused.append(reply.text)
                return reply.text
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.stall_first_rcpt and not self.rcpt_stalled.is_set():
            self.rcpt_stalled.set()
            await asyncio.sleep(self.stall_first_rcpt)
        reply = self._reply_for("RCPT", [address])
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self._reply_for("DATA", envelope.rcpt_tos)
        if reply is not None:
            return reply
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), message, session.peer)
            )
        if self.after_accept is not None:
            self.after_accept()
        return "250 Message accepted for delivery"


class SMTPServer:
    """aiosmtpd on 127.0.0.1: records what it accepts, answers the replies it is told to, and
    can be stopped and started again on the same port (a mail server that goes down)."""

    def __init__(self):
        self.port = free_port()
        self.handler = RecordingHandler()
        self._controller = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def answer(
        self, text: str, *, stage: str = "DATA", to: str | None = None, times: int | None = None
    ) -> None:
        """Answer `text` (e.g. "550 5.1.1 no such user") instead of accepting."""
        self.handler.replies.append(Reply(text, stage, to, times))

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [received.message for received in self.received]

    @property
    def refused(self) -> list[str]:
        with self.handler.lock:
            return list(self.handler.refused)

    def wait_for(self, count: int, *, timeout: float) -> bool:
        return wait_until(lambda: len(self.received) >= count, timeout=timeout)


class TricklingServer:
    """A server on 127.0.0.1 that can speak at a trickle: one byte every `interval` seconds,
    always under the client's read timeout, at the stage `trickle` names (None: full speed).
    What a socket timeout alone never ends. Each connection is served by `_talk`."""

    TLS_RECORD = b"\x16\x03\x03\x40\x00"  # a handshake record of 16 KiB, to be trickled

    def __init__(self, *, trickle: str | None, interval: float):
        self.trickle = trickle
        self.interval = interval
        self.accepted = 0  # messages whose final reply was sent in full
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(client,), daemon=True).start()

    def _talk(self, client) -> None:
        raise NotImplementedError

    def _drip(self, client, data: bytes) -> None:
        for byte in data:  # ends when the client hangs up
            if self._stopped.wait(self.interval):
                return
            client.sendall(bytes([byte]))

    def _send(self, client, data: bytes, *, stage: str) -> None:
        if self.trickle == stage:
            self._drip(client, data)
        else:
            client.sendall(data)

    def _handshake(self, client) -> None:
        client.sendall(self.TLS_RECORD[:1])
        self._drip(client, self.TLS_RECORD[1:] + bytes(64))


class TricklingSMTPServer(TricklingServer):
    """An SMTP server whose trickled stage is the greeting, the reply to the message's data,
    or the TLS handshake of SMTPS ("smtps") or of STARTTLS ("starttls")."""

    def _say(self, client, line: str, *, stage: str) -> None:
        self._send(client, f"{line}\r\n".encode(), stage=stage)

    def _talk(self, client) -> None:
        with client, client.makefile("rb") as lines:
            try:
                if self.trickle == "smtps":
                    return self._handshake(client)
                self._say(client, "220 trickle.test ESMTP, at one byte a moment", stage="greeting")
                for line in lines:
                    verb = line[:4].upper()
                    if verb == b"EHLO":
                        self._say(client, "250-trickle.test\r\n250 STARTTLS", stage="")
                    elif verb == b"STAR":
                        self._say(client, "220 ready to start TLS", stage="")
                        return self._handshake(client)
                    elif verb == b"DATA":
                        self._say(client, "354 go ahead", stage="")
                        for data_line in lines:
                            if data_line == b".\r\n":
                                break
                        self._say(client, "250 2.0.0 accepted for delivery, at last", stage="data")
                        self.accepted += 1
                    elif verb == b"QUIT":
                        return self._say(client, "221 bye", stage="")
                    else:
                        self._say(client, "250 ok", stage="")
            except OSError:  # the client shut the connection down
                return


class TricklingProviderAPI(TricklingServer):
    """A provider's send API (Postmark's answer) over HTTP/1.1 with keep-alive, whose trickled
    stage is the TLS handshake ("tls": the client speaks HTTPS to it), the status line and
    headers ("headers"), the body ("body"), or the body of an answer that closes the
    connection ("closing body")."""

    def _read_request(self, stream) -> bool:
        if not stream.readline():
            return False
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        stream.read(length)
        return True

    def _answer(self, client) -> None:
        answer = {"To": "ada@example.com", "MessageID": str(uuid.uuid4()), "ErrorCode": 0}
        body = json.dumps({**answer, "Message": "OK"}).encode()
        closing = self.trickle == "closing body"
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"{'Connection: close' if closing else 'Keep-Alive: timeout=60'}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._send(client, head, stage="headers")
        self._send(client, body, stage="closing body" if closing else "body")

    def _talk(self, client) -> None:
        with client, client.makefile("rb") as stream:
            try:
                if self.trickle == "tls":
                    return self._handshake(client)
                while self._read_request(stream):
                    self._answer(client)
                    self.accepted += 1
            except OSError:  # the client shut the connection down
                return


class RedisServer:
    """A redis-server of the test's own on a free port (never the machine's main Redis)."""

    def __init__(self, binary: str, directory):
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        # fmt: off
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # fmt: on
        if not wait_until(self._answers, timeout=10):
            self.kill()
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown; with no persistence its messages are lost."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def _drop_broker_connections() -> None:
    """Celery keeps its broker connections in kombu's pools, made for the URL it first used:
    close and forget them all, so that the next publish connects to the broker now set."""
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def celery_publishing_to(broker_url: str):
    """Tasks are published to this broker instead of run in process, for the block."""
    conf = celery_app.conf
    saved = conf.broker_url, conf.task_always_eager
    _drop_broker_connections()
    conf.broker_url = broker_url
    conf.task_always_eager = False
    try:
        yield
    finally:
        _drop_broker_connections()
        conf.broker_url, conf.task_always_eager = saved


def dispatched_email_ids(client: redis.Redis, queue: str = "celery") -> list[int]:
    """The email ids of the delivery tasks waiting in a queue of a Redis broker, sorted."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == "emails.tasks.deliver_email"
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        ids.append(kwargs["email_id"])
    return sorted(ids)
