"""`/ws/notifications/` through the project's ASGI application: who may connect (session cookie
or a single-use ticket, from an Origin the site serves), what is pushed after commit, what a
client that missed pushes gets back, and the answer to frames it cannot take."""

import datetime
import json
import logging
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from emails.tests.helpers import free_port
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.asgi import application
from invoicegen.core.redaction import RedactSecrets
from notifications import preferences, realtime, services
from notifications.models import Notification, SocketTicket

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")
PAID = {"invoice_number": "INV-7", "client_name": "Globex", "total": "$10.00"}


def session_of(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


class Socket:
    """A WebSocket client of the ASGI application."""

    def __init__(self, path="/ws/notifications/", headers=(ORIGIN,)):
        self.communicator = WebsocketCommunicator(application, path, headers=list(headers))

    async def connect(self):
        connected, code = await self.communicator.connect(timeout=5)
        if not connected:
            # A refused consumer lives on until its client disconnects: end it here, as a
            # client would. Left to be cancelled when the test's event loop closed, it once
            # hung a whole run.
            await self.communicator.disconnect()
        return connected, code

    async def receive(self, timeout=5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout))

    async def send(self, frame) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_to(bytes_data=data)

    async def nothing_more(self) -> bool:
        return await self.communicator.receive_nothing(0.3)

    async def close(self):
        await self.communicator.disconnect()


def run(scenario):
    """An async scenario in one event loop (the application's), from a synchronous test."""
    async_to_sync(scenario)()


db = database_sync_to_async


async def signed_in(user) -> Socket:
    socket = Socket(headers=(ORIGIN, await db(session_of)(user)))
    assert await socket.connect() == (True, None)
    return socket


def paid(user) -> Notification:
    return services.notify(user, "invoice_paid", params=PAID)


def test_a_signed_in_page_connects_and_hears_its_unread_count():
    owner = UserFactory()
    paid(owner)

    async def scenario():
        socket = await signed_in(owner)
        assert await socket.receive() == {"type": "ready", "unread_count": 1}
        await socket.close()

    run(scenario)


def test_a_new_notification_is_pushed_with_the_new_unread_count():
    owner = UserFactory()

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        notification = await db(paid)(owner)
        frame = await socket.receive()
        assert frame["type"] == "notification.created"
        assert frame["unread_count"] == 1
        assert frame["notification"]["id"] == notification.pk
        assert frame["notification"]["title"] == "Invoice INV-7 paid"
        await socket.close()

    run(scenario)


def test_reading_is_pushed_to_every_connection_of_the_user():
    owner = UserFactory()
    first, _ = paid(owner), paid(owner)

    async def scenario():
        sockets = [await signed_in(owner), await signed_in(owner)]
        for socket in sockets:
            await socket.receive()
        await db(services.mark_read)(first)
        for socket in sockets:
            assert await socket.receive() == {
                "type": "notification.read", "ids": [first.pk], "unread_count": 1
            }  # fmt: skip
        await db(services.mark_all_read)(owner)
        for socket in sockets:
            assert await socket.receive() == {
                "type": "notification.read", "ids": None, "unread_count": 0
            }  # fmt: skip
            await socket.close()

    run(scenario)


def test_a_user_hears_of_their_own_notifications_only():
    owner, other = UserFactory(), UserFactory()

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        await db(paid)(other)
        assert await socket.nothing_more()
        await socket.close()

    run(scenario)


def test_a_notification_kept_out_of_the_feed_is_not_pushed():
    owner = UserFactory()
    preferences.set_matrix(owner, {"invoice_paid": {"in_app": "off"}})

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        await db(paid)(owner)
        assert await socket.nothing_more()
        await socket.close()

    run(scenario)


def test_with_the_live_push_off_only_the_new_unread_count_is_pushed():
    owner = UserFactory()
    preferences.set_matrix(owner, {"invoice_paid": {"realtime": "off"}})

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        await db(paid)(owner)
        assert await socket.receive() == {"type": "unread_count", "unread_count": 1}
        assert await socket.nothing_more()
        await socket.send({"type": "resume", "last_id": 0})  # not shown on a reconnect either
        assert await socket.receive() == {"type": "resumed", "more": False, "unread_count": 1}
        await socket.close()

    run(scenario)
    assert services.unread_count(owner) == 1  # in the feed, only not shown live


def test_a_client_that_reconnects_gets_what_it_missed_oldest_first():
    owner = UserFactory()
    seen, *missed = [paid(owner) for _ in range(3)]

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        await socket.send({"type": "resume", "last_id": seen.pk})
        ids = [(await socket.receive())["notification"]["id"] for _ in missed]
        assert ids == [n.pk for n in missed]
        assert await socket.receive() == {"type": "resumed", "more": False, "unread_count": 3}
        await socket.close()

    run(scenario)


def test_an_anonymous_or_foreign_origin_connection_is_refused():
    session = session_of(UserFactory())

    async def scenario():
        assert await Socket().connect() == (False, 4401)
        foreign = Socket(headers=[(b"origin", b"https://evil.example"), session])
        assert (await foreign.connect())[0] is False
        assert (await Socket(headers=[session]).connect())[0] is False

    run(scenario)


def ticket_for(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.post("/api/notifications/ws-ticket/")
    assert response.status_code == 201
    return response.json()["ticket"]


def test_a_ticket_opens_one_connection_once():
    ticket = ticket_for(UserFactory())

    async def scenario():
        first = Socket(path=f"/ws/notifications/?ticket={ticket}")
        again = Socket(path=f"/ws/notifications/?ticket={ticket}")
        assert await first.connect() == (True, None)
        assert (await first.receive())["type"] == "ready"
        assert await again.connect() == (False, 4401)
        await first.close()

    run(scenario)
    assert not SocketTicket.objects.exists()  # only its hash was stored, and it is used up


def test_a_ticket_decides_over_the_session_cookie_the_browser_sends_along():
    """A page signed in by token as one user, in a browser with another's admin session."""
    staff, owner = UserFactory(is_staff=True), UserFactory()
    paid(owner)
    ticket = ticket_for(owner)

    async def scenario():
        socket = Socket(
            path=f"/ws/notifications/?ticket={ticket}",
            headers=(ORIGIN, await db(session_of)(staff)),
        )
        assert await socket.connect() == (True, None)
        assert await socket.receive() == {"type": "ready", "unread_count": 1}
        await socket.close()

    run(scenario)


def test_an_expired_forged_or_inactive_users_ticket_opens_nothing():
    owner, gone = UserFactory(), UserFactory()
    expired = ticket_for(owner)
    SocketTicket.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    inactive = ticket_for(gone)
    gone.is_active = False
    gone.save(update_fields=["is_active"])

    async def scenario():
        for ticket in [expired, inactive, "forged", "x" * 500, ""]:
            socket = Socket(path=f"/ws/notifications/?ticket={ticket}")
            assert (await socket.connect())[0] is False

    run(scenario)


def test_a_ticket_is_issued_to_a_signed_in_caller_only_and_never_logged():
    anonymous = Client().post("/api/notifications/ws-ticket/")
    ticket = ticket_for(UserFactory())
    line = '"GET /ws/notifications/?ticket=%s HTTP/1.1" 101'
    record = logging.LogRecord("django.server", logging.INFO, "", 0, line, (ticket,), None)

    RedactSecrets().filter(record)

    assert anonymous.status_code == 401
    assert ticket not in record.getMessage()


@pytest.mark.parametrize(
    "frame, detail",
    [
        ("not json", "The frame is not JSON."),
        ("[1, 2]", 'Unknown frame: its "type" is "resume" or "ping".'),
        ({"type": "shout"}, 'Unknown frame: its "type" is "resume" or "ping".'),
        ({"type": "resume", "last_id": "7"}, "last_id must be a whole number, 0 or more."),
        ({"type": "resume", "last_id": -1}, "last_id must be a whole number, 0 or more."),
        ({"type": "resume", "last_id": True}, "last_id must be a whole number, 0 or more."),
        ("[" * 100_000, "Send a JSON object as text, at most 4096 bytes."),
        ("[" * 4000, "The frame is not JSON."),
        (b"\x00\x01", "Send a JSON object as text, at most 4096 bytes."),
    ],
)
def test_a_frame_it_cannot_take_is_answered_with_an_error_and_the_connection_lives(frame, detail):
    owner = UserFactory()

    async def scenario():
        socket = await signed_in(owner)
        await socket.receive()
        if isinstance(frame, bytes):
            await socket.send_bytes(frame)
        else:
            await socket.send(frame)
        assert await socket.receive() == {"type": "error", "detail": detail}
        await socket.send({"type": "ping"})
        assert await socket.receive() == {"type": "pong"}
        await socket.close()

    run(scenario)


def test_with_the_channel_layer_down_changes_commit_and_pushes_pause(settings, caplog, monkeypatch):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": f"redis://127.0.0.1:{free_port()}/0",
                           "socket_connect_timeout": 1}]
            },
        }
    }  # fmt: skip
    monkeypatch.setattr(realtime, "_paused_until", 0.0)
    owner = UserFactory()
    started = time.monotonic()

    made = [paid(owner) for _ in range(20)]

    assert time.monotonic() - started < 5  # one connect timed out, not twenty
    assert Notification.objects.filter(pk__in=[n.pk for n in made]).count() == 20
    failures = [r for r in caplog.records if r.name == "notifications.realtime"]
    assert len(failures) == 1 and "none tried for 30 s" in failures[0].getMessage()
