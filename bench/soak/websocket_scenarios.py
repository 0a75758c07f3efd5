"""Live notifications (notifications/consumers.py) through a crash of daphne: readers of the
harness's, each on a WebSocket of its own as the SPA's, while their notifications are made and
read."""

import json
import random
import threading
import time
from typing import TYPE_CHECKING

import websocket
from django.contrib.auth import get_user_model
from django.db import transaction

from bench.soak import checks
from bench.soak.checks import Mark, Outcome
from bench.soak.load import Client
from bench.soak.topology import rss_kib, wait_for_port
from emails.tests.helpers import wait_until
from invoicegen.accounts.services import create_auth_token
from notifications import services, types
from notifications.models import Notification

if TYPE_CHECKING:
    from bench.soak.scenarios import Run

READERS = 30
ROUND_PAUSE_SECONDS = 0.2
FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS = 0.25, 2.0  # a reader's backoff while it cannot connect


class Reader:
    """One user's WebSocket client in a thread of its own: a fresh ticket for each connection,
    then a `resume` after the last notification it saw; it keeps what it saw (notification
    ids, the last unread count) and connects again, with backoff, whenever it is cut off."""

    def __init__(self, user, *, port: int, api: Client):
        self.user = user
        self.port = port
        self.api = api
        self.seen: set[int] = set()
        self.unread: int | None = None
        self.resumed_at = 0.0  # when the server last answered a resume
        self._socket: websocket.WebSocket | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._socket is not None:
            self._socket.abort()  # ends the recv it waits in
        self._thread.join(timeout=10)

    def _run(self) -> None:
        pause = FIRST_RETRY_SECONDS
        while not self._stopped.is_set():
            try:
                socket = self._connect()
            except (OSError, websocket.WebSocketException):
                self._stopped.wait(pause)
                pause = min(2 * pause, LAST_RETRY_SECONDS)
                continue
            pause = FIRST_RETRY_SECONDS
            try:
                self._listen(socket)
            except (OSError, websocket.WebSocketException, ValueError):
                pass  # cut off (or the server's close frame): connect again
            finally:
                socket.close()

    def _connect(self) -> websocket.WebSocket:
        reply = self.api.call("POST", "/api/notifications/ws-ticket/")
        if reply.status != 201:
            raise ConnectionError(f"no ticket: HTTP {reply.status}")
        socket = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/ws/notifications/?ticket={reply.data['ticket']}",
            origin=f"http://127.0.0.1:{self.port}",
            timeout=10,
        )
        socket.settimeout(None)  # it waits for pushes as long as it lives; stop() ends it
        self._socket = socket
        return socket

    def _resume(self, socket: websocket.WebSocket) -> None:
        socket.send(json.dumps({"type": "resume", "last_id": max(self.seen, default=0)}))

    def _listen(self, socket: websocket.WebSocket) -> None:
        self._resume(socket)
        while not self._stopped.is_set():
            frame = json.loads(socket.recv())
            if frame["type"] == "notification.created":
                self.seen.add(frame["notification"]["id"])
            elif frame["type"] == "resumed":
                self.resumed_at = time.monotonic()
                if frame["more"]:
                    self._resume(socket)
            self.unread = frame.get("unread_count", self.unread)


def daphne_restart(run: "Run", outcome: Outcome, mark: Mark) -> None:
    """Readers connected while notifications are made for their users and read (as a web or
    worker process does: row, commit, push through the Redis channel layer); daphne SIGKILLed
    midway and started again. Each reader connects again by itself with a fresh ticket and
    resumes after the last notification it saw: in the end it has seen every notification of
    its user, and its last unread count is the database's."""
    daphne = run.topology.daphne
    rounds = int(run.seconds(8, short=4))  # of notifications, in each of the four phases
    rng = random.Random(7)  # which readers read, the same in every run
    readers = [
        Reader(user, port=run.topology.ports.asgi, api=Client(run.load.port, run.recorder, token))
        for user, token in _new_users(run, READERS)
    ]
    for reader in readers:
        reader.start()
    try:
        if not wait_until(lambda: all(r.resumed_at for r in readers), timeout=30, interval=0.2):
            outcome.failures.append("the readers did not all connect within 30 s")
            return
        rss_before = rss_kib(daphne.pid)
        _notify_and_read(readers, rounds, rng)
        killed_at = time.monotonic()
        daphne.kill()
        outcome.faulted.add(daphne.name)
        try:
            _notify_and_read(readers, rounds, rng)  # their pushes are lost: resumes catch up
        finally:
            daphne.start()
        if not wait_for_port(run.topology.ports.asgi, timeout=60):
            outcome.failures.append(f"daphne did not start again: see {daphne.log_path}")
            return
        back_at = time.monotonic()
        _notify_and_read(readers, rounds, rng)  # while the readers connect again
        if not wait_until(
            lambda: all(r.resumed_at > killed_at for r in readers), timeout=30, interval=0.1
        ):
            outcome.failures.append("the readers did not all connect again within 30 s")
        reconnected_at = max(r.resumed_at for r in readers)
        _notify_and_read(readers, rounds, rng)
        wait_until(lambda: _behind(readers) == (0, 0), timeout=10, interval=0.5)
        missed, drifted = _behind(readers)
        made = Notification.objects.filter(user__in=[r.user for r in readers]).count()
        outcome.figures["live"] = {
            "readers": len(readers),
            "notifications": made,
            "missed": missed,
            "drift": drifted,
            "daphne_down_seconds": round(back_at - killed_at, 1),
            "reconnect_seconds": round(reconnected_at - back_at, 1),
            "daphne_rss_kib": {"before_the_kill": rss_before, "after": rss_kib(daphne.pid)},
        }
        if missed:
            outcome.failures.append(f"{missed} notification(s) never reached their reader")
        if drifted:
            outcome.failures.append(f"{drifted} reader(s) end on a wrong unread count")
    finally:
        for reader in readers:
            reader.stop()


def _new_users(run: "Run", count: int) -> list[tuple]:
    """Verified users of the run's own, and an API token each: none has notifications yet."""
    checks.fresh_connection()
    users = [
        get_user_model().objects.create_user(
            f"reader-{run.load.run}-{n}@example.com", name=f"Reader {n}", email_verified=True
        )
        for n in range(count)
    ]
    return [(user, create_auth_token(user)) for user in users]


def _notify_and_read(readers: list[Reader], rounds: int, rng: random.Random) -> None:
    """Rounds of a notification to each reader; after each, about a third of them read one,
    and one in ten reads them all. Every change commits on its own, and pushes once it does."""
    for _ in range(rounds):
        for reader in readers:
            with transaction.atomic():
                services.notify(
                    reader.user,
                    services.ADMIN_MESSAGE,
                    params={"title": "Soak", "message": "A live notification."},
                    channels=(types.IN_APP,),
                )
            choice = rng.random()
            if choice < 0.3:
                unread = Notification.objects.filter(user=reader.user, read_at=None).first()
                if unread is not None:
                    with transaction.atomic():
                        services.mark_read(unread)
            elif choice < 0.4:
                with transaction.atomic():
                    services.mark_all_read(reader.user)
        time.sleep(ROUND_PAUSE_SECONDS)


def _behind(readers: list[Reader]) -> tuple[int, int]:
    """Notifications of the readers' users that their reader never saw, and readers whose last
    unread count is not the database's."""
    missed = drifted = 0
    for reader in readers:
        made = Notification.objects.filter(user=reader.user, in_app=True)
        missed += len(set(made.values_list("pk", flat=True)) - reader.seen)
        drifted += reader.unread != services.unread_count(reader.user)
    return missed, drifted
