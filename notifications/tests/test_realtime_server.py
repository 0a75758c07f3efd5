"""`/ws/notifications/` as it runs in production: a daphne process serving the ASGI application
on the test database, the Redis channel layer between it and the process where notifications
are made, and a real WebSocket client."""

import json
import os
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
import websocket
from django.conf import settings
from django.db import connection
from django.test import Client

from emails.tests.helpers import free_port
from emails.tests.test_delivery_real import database_url_of
from invoicegen.accounts.tests.factories import UserFactory
from notifications import services

pytestmark = pytest.mark.django_db(transaction=True)

PAID = {"invoice_number": "INV-9", "client_name": "Globex", "total": "$10.00"}


@pytest.fixture
def daphne(tmp_path):
    """A daphne process on the test database and REDIS_URL's channel layer; its port."""
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("an ASGI process needs the test database on a server and Redis")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    log = tmp_path / "daphne.log"
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    command += ["--ping-interval", "1", "--ping-timeout", "5"]  # daphne's are 20 s and 30 s
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "invoicegen.asgi:application"],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "Listening on TCP address" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()  # daphne waits for its open connections' applications, briefly
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def ticket_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.post("/api/notifications/ws-ticket/").json()["ticket"]


def open_socket(port: int, ticket: str) -> websocket.WebSocket:
    return websocket.create_connection(
        f"ws://127.0.0.1:{port}/ws/notifications/?ticket={ticket}",
        origin=f"http://127.0.0.1:{port}",
        timeout=5,
    )


def test_a_notification_made_in_another_process_is_pushed_through_redis(daphne):
    owner, other = UserFactory(), UserFactory()
    socket = open_socket(daphne, ticket_for(owner))
    assert json.loads(socket.recv()) == {"type": "ready", "unread_count": 0}

    services.notify(other, "invoice_paid", params=PAID)
    notification = services.notify(owner, "invoice_paid", params=PAID)

    frame = json.loads(socket.recv())
    assert frame["type"] == "notification.created"
    assert (frame["notification"]["id"], frame["unread_count"]) == (notification.pk, 1)
    services.mark_read(notification)
    assert json.loads(socket.recv()) == {
        "type": "notification.read", "ids": [notification.pk], "unread_count": 0
    }  # fmt: skip
    socket.close()


def test_a_used_ticket_and_a_foreign_origin_are_refused_by_the_server(daphne):
    ticket = ticket_for(UserFactory())
    first = open_socket(daphne, ticket)

    with pytest.raises(websocket.WebSocketException):
        open_socket(daphne, ticket).recv()
    with pytest.raises(websocket.WebSocketException):
        websocket.create_connection(
            f"ws://127.0.0.1:{daphne}/ws/notifications/?ticket={ticket_for(UserFactory())}",
            origin="https://evil.example",
            timeout=5,
        )
    first.close()


def test_an_idle_connection_is_pinged_by_the_server(daphne):
    socket = open_socket(daphne, ticket_for(UserFactory()))
    socket.recv()  # ready

    opcode, _ = socket.recv_data_frame(control_frame=True)

    assert opcode == websocket.ABNF.OPCODE_PING
    socket.close()


def test_an_idle_connection_still_hears_of_a_notification_minutes_later(daphne):
    """Its receive waits on Redis longer than any read timeout a cache client would use."""
    owner = UserFactory()
    socket = open_socket(daphne, ticket_for(owner))
    socket.recv()  # ready
    socket.settimeout(0.5)
    idle_until = time.monotonic() + 7  # past channels_redis's 5 s blocking receive
    while time.monotonic() < idle_until:
        with suppress(websocket.WebSocketTimeoutException):
            socket.recv()  # nothing comes; the client answers the server's pings meanwhile
    socket.settimeout(5)

    notification = services.notify(owner, "invoice_paid", params=PAID)

    assert json.loads(socket.recv())["notification"]["id"] == notification.pk
    socket.close()
