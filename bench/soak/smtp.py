"""The mail side: an aiosmtpd sink that keeps every message it accepts, and in front of it a
TCP proxy that plays a mail server's faults: down, slow, and a reply held back just after the
server accepted a message (the worst moment for a crash).

The proxy cuts a connection only where that cannot lose or double a message: at the start of
the client's next transaction (its MAIL command), as a server that goes away between
messages would. Cutting mid-message would itself make duplicates the product cannot avoid.
"""

import asyncio
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage

from emails.tests.helpers import SMTPServer

SLOW_BYTE_SECONDS = 5.0  # "one byte every 5 s": under any read timeout, so none fires
END_OF_DATA = b"\r\n.\r\n"
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class Sink(SMTPServer):
    """The mail server: what it accepted, counted by Message-ID (a duplicate is an ID
    accepted twice), and searchable by recipient, for the links in the messages."""

    def __init__(self):
        super().__init__()
        self._index_lock = threading.Lock()
        self._indexed = 0
        self._by_recipient: dict[str, list[EmailMessage]] = defaultdict(list)

    def message_id_counts(self) -> Counter:
        return Counter(message["Message-ID"] for message in self.messages)

    def find(self, recipient: str, pattern: re.Pattern) -> re.Match | None:
        """The pattern in the newest plain-text body sent to `recipient` that has it."""
        with self._index_lock:
            with self.handler.lock:
                new = self.handler.received[self._indexed :]
            self._indexed += len(new)
            for received in new:
                for to in received.rcpt_tos:
                    self._by_recipient[to.lower()].append(received.message)
            messages = list(self._by_recipient.get(recipient.lower(), ()))
        for message in reversed(messages):
            if found := pattern.search(message.get_body(preferencelist=("plain",)).get_content()):
                return found
        return None


@dataclass(eq=False)
class Connection:
    """One client connection through the proxy, as the proxy saw it."""

    client_port: int
    slowed: bool  # trickled from the start
    slow: bool = field(init=False)  # trickled now (until the server is well again)
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    closed_by: str = ""  # "client", "server" or "proxy"
    cut: bool = False  # to be cut at the start of its next transaction
    in_data: bool = False
    tail: bytes = b""
    header: bytes = b""
    hold_reply: bool = False
    message_id: str | None = None  # of the message whose acceptance is held

    def __post_init__(self):
        self.slow = self.slowed


class SMTPProxy:
    """A TCP proxy on a port of its own, run by an event loop in a thread; its modes are
    switched from the harness's threads."""

    def __init__(self, port: int, *, target_port: int):
        self.port = port
        self.target_port = target_port
        self.mode = "pass"
        self.connections: list[Connection] = []
        self.held = threading.Event()
        self.held_connection: Connection | None = None
        self._slow_left = 0
        self._hold_armed = False
        self._released: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _call(self, function, *args):
        async def run():
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._unlisten)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _cut_open_connections(self) -> None:
        for connection in self.connections:
            if connection.closed_at is None:
                connection.cut = True

    def go_down(self) -> None:
        """New connections are refused; open ones end before their next message."""

        def down():
            self.mode = "down"
            self._unlisten()
            self._cut_open_connections()

        self._call(down)

    def go_slow(self, *, connections: int) -> None:
        """The next `connections` connections get the server's bytes one every
        SLOW_BYTE_SECONDS; open ones end before their next message, so clients reconnect."""

        def slow():
            self.mode = "slow"
            self._slow_left = connections
            self._cut_open_connections()

        self._call(slow)

    def go_normal(self) -> None:
        def normal():
            self.mode = "pass"
            self._slow_left = 0
            for connection in self.connections:
                connection.slow = False

        self._call(normal)
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    def hold_next_acceptance(self) -> None:
        """The server's reply to the end of the next message is held back until `release()`:
        the message is accepted, and its sender does not know yet."""

        def arm():
            self.held.clear()
            self.held_connection = None
            self._released = asyncio.Event()
            self._hold_armed = True

        self._call(arm)

    def release(self) -> None:
        def release():
            self._hold_armed = False
            if self._released is not None:
                self._released.set()

        self._call(release)

    def slowed_connections(self) -> list[Connection]:
        return [connection for connection in list(self.connections) if connection.slowed]

    async def _handle(self, client_reader, client_writer) -> None:
        connection = Connection(
            client_port=client_writer.get_extra_info("peername")[1],
            slowed=self.mode == "slow" and self._slow_left > 0,
        )
        if connection.slowed:
            self._slow_left -= 1
        self.connections.append(connection)
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()
            connection.closed_at, connection.closed_by = time.monotonic(), "server"
            return
        pumps = {
            asyncio.ensure_future(self._upstream(connection, client_reader, server_writer)),
            asyncio.ensure_future(self._downstream(connection, server_reader, client_writer)),
        }
        _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pending:
            pump.cancel()
        for writer in (client_writer, server_writer):
            writer.close()
        connection.closed_at = time.monotonic()

    async def _upstream(self, connection: Connection, reader, writer) -> None:
        """Client to server, watching where each transaction starts and each message ends."""
        try:
            while chunk := await reader.read(65536):
                if connection.in_data:
                    if len(connection.header) < 8192:
                        connection.header += chunk[:8192]
                    connection.tail = (connection.tail + chunk)[-len(END_OF_DATA) :]
                    if connection.tail == END_OF_DATA:
                        connection.in_data = False
                        if self._hold_armed:
                            self._hold_armed = False
                            connection.hold_reply = True
                            found = MESSAGE_ID.search(connection.header)
                            connection.message_id = found and found.group(1).decode()
                else:
                    verb = chunk[:4].upper()
                    if verb == b"MAIL" and connection.cut:
                        connection.closed_by = "proxy"
                        return
                    if verb == b"DATA":
                        connection.in_data = True
                        connection.tail = b"\r\n"  # an empty message ends at once
                        connection.header = b""
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        connection.closed_by = connection.closed_by or "client"

    async def _downstream(self, connection: Connection, reader, writer) -> None:
        try:
            while chunk := await reader.read(65536):
                if connection.hold_reply:
                    connection.hold_reply = False
                    self.held_connection = connection
                    self.held.set()
                    await self._released.wait()
                for index in range(len(chunk)):
                    if not connection.slow:
                        writer.write(chunk[index:])
                        break
                    await asyncio.sleep(SLOW_BYTE_SECONDS)
                    writer.write(chunk[index : index + 1])
                    await writer.drain()
                await writer.drain()
        except OSError:
            pass
        connection.closed_by = connection.closed_by or "server"
