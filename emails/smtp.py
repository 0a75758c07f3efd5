"""Sending over SMTP with a hard deadline, through one kept connection per worker.

`EMAIL_TIMEOUT` bounds each socket read, not a send: a server that trickles a byte every few
seconds never trips it and holds the worker for ever (and past the outbox's lease, so the row
is sent twice). Each send therefore runs under core's `Deadline` of `EMAIL_SEND_TIMEOUT`, which
shuts the connection down in the greeting, the TLS handshake (SMTPS or STARTTLS) or the
dialogue alike.
"""

import contextlib
import smtplib
import threading

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends import smtp

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


class WatchedSMTP(smtplib.SMTP):
    """Keeps a duplicate of its TCP socket for the send's deadline to cut."""

    raw_socket = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.raw_socket = sock.dup()
        if _local.deadline is not None:
            try:
                _local.deadline.guard(self.raw_socket)
            except DeadlineExceeded:  # the deadline passed while connecting
                sock.close()
                raise
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
    with Deadline(settings.EMAIL_SEND_TIMEOUT) as deadline:
        _local.deadline = deadline
        try:
            kept = getattr(backend, "connection", None)
            deadline.guard(getattr(kept, "raw_socket", None))
            backend.open()
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
