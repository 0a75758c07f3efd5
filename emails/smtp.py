"""Sending over SMTP with a hard deadline, through one kept connection per worker.

`EMAIL_TIMEOUT` bounds each socket read, not a send: a server that trickles a byte every few
seconds never trips it and holds the worker for ever (and past the outbox's lease, so the row
is sent twice). Each send therefore runs under `EMAIL_SEND_TIMEOUT`: when it is over, a timer
shuts the connection down, which ends any read or write in progress at once, in the greeting,
the TLS handshake (SMTPS or STARTTLS) or the dialogue alike.
"""

import contextlib
import smtplib
import socket
import threading

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import smtp


class SendDeadlineExceeded(smtplib.SMTPServerDisconnected):
    """Temporary, like any lost connection: the row is retried with backoff."""


def _deadline_exceeded() -> SendDeadlineExceeded:
    return SendDeadlineExceeded(
        f"no answer within EMAIL_SEND_TIMEOUT ({settings.EMAIL_SEND_TIMEOUT} s)"
    )


class _Watch:
    """One send's deadline. It cuts the connection through a duplicate of the TCP socket's
    descriptor, taken as soon as the socket is connected: TLS wraps (and detaches) the
    original, but a shutdown of the duplicate ends the connection under any wrapping."""

    def __init__(self, client=None):
        self.client = client
        self.expired = False
        self._over = False
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            if self._over:  # the send ended as the timer fired: its connection lives on
                return
            self.expired = True
            raw = getattr(self.client, "raw_socket", None)
            if raw is not None:
                with contextlib.suppress(OSError):  # already closed
                    raw.shutdown(socket.SHUT_RDWR)

    def end(self) -> None:
        with self._lock:
            self._over = True


class _Local(threading.local):
    backend = None
    settings_key = None
    watch = None


_local = _Local()


class WatchedSMTP(smtplib.SMTP):
    raw_socket = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.raw_socket = sock.dup()
        watch = _local.watch
        if watch is not None:
            watch.client = self
            if watch.expired:  # the deadline passed while connecting
                sock.close()
                raise _deadline_exceeded()
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
    watch = _local.watch = _Watch(getattr(backend, "connection", None))
    timer = threading.Timer(settings.EMAIL_SEND_TIMEOUT, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        reused = watch.client is not None
        backend.open()
        try:
            backend.send_messages([message])
        except smtplib.SMTPServerDisconnected:
            if not reused or watch.expired:
                raise
            backend.close()
            backend.open()
            backend.send_messages([message])
    except Exception as error:
        close()
        if watch.expired:
            raise _deadline_exceeded() from error
        raise
    finally:
        watch.end()
        timer.cancel()
        _local.watch = None


def close() -> None:
    if _local.backend is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):  # a connection already broken
            _local.backend.close()
    _local.backend = _local.settings_key = None
