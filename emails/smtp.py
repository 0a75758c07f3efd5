"""Sending over SMTP or a provider's HTTP API with a hard deadline, through one kept connection
per worker.

`EMAIL_TIMEOUT` bounds each socket read, not a send: a server that trickles a byte every few
seconds never trips it and holds the worker for ever (and past the outbox's lease, so the row
is sent twice). Each send therefore runs under core's `Deadline` of `EMAIL_SEND_TIMEOUT`, which
shuts the connection down in the greeting, the TLS handshake (SMTPS or STARTTLS) or the
dialogue alike; for a provider (anymail's requests-based backends), in the connect, the TLS
handshake, the request or the answer, on a new or a kept-alive connection.
"""

import contextlib
import smtplib
import socket
import threading

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import smtp
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

from invoicegen.core.outbox import Deadline, DeadlineExceeded


class SendDeadlineExceeded(smtplib.SMTPServerDisconnected):
    """Temporary, like any lost connection: the row is retried with backoff."""


def _deadline_exceeded() -> SendDeadlineExceeded:
    return SendDeadlineExceeded(
        f"no answer within EMAIL_SEND_TIMEOUT ({settings.EMAIL_SEND_TIMEOUT} s)"
    )


class _Local(threading.local):
    backend = None
    settings_key = None
    deadline = None


_local = _Local()


def _hand_to_deadline(sock: socket.socket | None) -> None:
    if _local.deadline is not None:
        _local.deadline.guard(sock)


def _watched_duplicate(sock: socket.socket) -> socket.socket:
    """A duplicate of a socket just connected, handed to the send's deadline: TLS wraps (and
    detaches) the socket, and the duplicate still cuts the connection during the handshake."""
    duplicate = sock.dup()
    try:
        _hand_to_deadline(duplicate)
    except DeadlineExceeded:  # the deadline passed while connecting
        duplicate.close()
        sock.close()
        raise
    return duplicate


class WatchedSMTP(smtplib.SMTP):
    """Keeps a duplicate of its TCP socket for the send's deadline to cut."""

    raw_socket = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.raw_socket = _watched_duplicate(sock)
        return sock

    def close(self):
        super().close()
        if self.raw_socket is not None:
            self.raw_socket.close()
            self.raw_socket = None


class WatchedSMTPSSL(smtplib.SMTP_SSL, WatchedSMTP):
    """SMTP_SSL wraps the socket WatchedSMTP has connected (and watched): the handshake is
    under the deadline too."""


class EmailBackend(smtp.EmailBackend):
    """Django's SMTP backend whose connections a send's deadline can cut."""

    @property
    def connection_class(self):
        return WatchedSMTPSSL if self.use_ssl else WatchedSMTP


class WatchedHTTPConnection(HTTPConnection):
    """A provider's API connection under the send's deadline: a duplicate of its TCP socket
    while it connects (`_new_conn`, which urllib3's SOCKS connection overrides too, comes
    before any TLS handshake), then its socket itself, again before each request, since a
    kept-alive connection serves many sends. Not the duplicate for its whole life: an answer
    with `Connection: close` closes the connection before its body is read (the response reads
    on), and the socket outlives that close where a duplicate would not."""

    _handshake_socket = None

    def _new_conn(self):
        sock = super()._new_conn()
        self._handshake_socket = _watched_duplicate(sock)
        return sock

    def connect(self):
        try:
            super().connect()
        finally:
            if self._handshake_socket is not None:
                self._handshake_socket.close()
                self._handshake_socket = None
        _hand_to_deadline(self.sock)

    def request(self, *args, **kwargs):
        _hand_to_deadline(self.sock)
        super().request(*args, **kwargs)


class WatchedHTTPSConnection(WatchedHTTPConnection, HTTPSConnection):
    """urllib3's HTTPS connection wraps the socket WatchedHTTPConnection has connected (and
    watched): the handshake is under the deadline too."""


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


class WatchedHTTPAdapter(HTTPAdapter):
    """requests' adapter whose connection pools are made of watched connections."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": WatchedHTTPConnectionPool,
            "https": WatchedHTTPSConnectionPool,
        }


def _watch_provider_api(backend) -> None:
    """anymail's requests-based backends open a session of their own (one a worker, kept with
    the backend); its connections are made watched before its first request."""
    session = getattr(backend, "session", None)
    if isinstance(session, requests.Session) and not isinstance(
        session.get_adapter("https://"), WatchedHTTPAdapter
    ):
        for prefix in ("https://", "http://"):
            session.mount(prefix, WatchedHTTPAdapter())


def _backend():
    """This worker's backend (a process or thread each): opening and greeting cost as much as
    sending, so the connection stays open between emails."""
    key = (settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT)
    if key != _local.settings_key:
        close()
        _local.backend = get_connection(timeout=settings.EMAIL_TIMEOUT)
        _local.settings_key = key
    return _local.backend


def send(message: EmailMultiAlternatives) -> None:
    """Send within EMAIL_SEND_TIMEOUT. A kept connection that the server dropped while idle is
    opened again once; after any other error it is closed, so the next email starts clean."""
    backend = _backend()
    with Deadline(settings.EMAIL_SEND_TIMEOUT) as deadline:
        _local.deadline = deadline
        try:
            kept = getattr(backend, "connection", None)
            deadline.guard(getattr(kept, "raw_socket", None))
            backend.open()
            _watch_provider_api(backend)
            try:
                backend.send_messages([message])
            except smtplib.SMTPServerDisconnected:
                if kept is None or deadline.expired:
                    raise
                backend.close()
                backend.open()
                backend.send_messages([message])
        except Exception as error:
            close()
            if deadline.expired:
                raise _deadline_exceeded() from error
            raise
        finally:
            _local.deadline = None


def close() -> None:
    if _local.backend is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):  # a connection already broken
            _local.backend.close()
    _local.backend = _local.settings_key = None
