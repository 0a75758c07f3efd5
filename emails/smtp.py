"""Sending over SMTP with a hard deadline, through one kept connection per worker.

`EMAIL_TIMEOUT` bounds each socket read, not a send: a server that trickles a byte every few
seconds never trips it and holds the worker for ever (and past the outbox's lease, so the row
is sent twice). Each send therefore runs under `EMAIL_SEND_TIMEOUT`: when it is over, a timer
shuts the connection's socket down, which ends any read or write in progress at once.
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


class _Watch:
    """The SMTP client a send's deadline shuts down: set when the client creates its socket,
    before the greeting is read, so that a trickled greeting is bounded too."""

    def __init__(self):
        self.client = None
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        sock = getattr(self.client, "sock", None)  # the TLS socket, once STARTTLS wrapped it
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class _Local(threading.local):
    backend = None
    settings_key = None
    watch = None


_local = _Local()


class _WatchedClient:
    def _get_socket(self, host, port, timeout):
        if _local.watch is not None:
            _local.watch.client = self
        return super()._get_socket(host, port, timeout)


class WatchedSMTP(_WatchedClient, smtplib.SMTP):
    pass


class WatchedSMTPSSL(_WatchedClient, smtplib.SMTP_SSL):
    pass


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
    watch = _local.watch = _Watch()
    watch.client = getattr(backend, "connection", None)
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
            raise SendDeadlineExceeded(
                f"no answer within EMAIL_SEND_TIMEOUT ({settings.EMAIL_SEND_TIMEOUT} s)"
            ) from error
        raise
    finally:
        timer.cancel()
        _local.watch = None


def close() -> None:
    if _local.backend is not None:
        with contextlib.suppress(OSError, smtplib.SMTPException):  # a connection already broken
            _local.backend.close()
    _local.backend = _local.settings_key = None
