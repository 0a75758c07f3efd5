import pytest

from emails import services
from emails import smtp as sending
from emails.tests.helpers import (
    SMTPServer,
    TricklingProviderAPI,
    TricklingSMTPServer,
)


def send_through(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "emails.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def smtp(settings):
    """Django sends through SMTP to a real server on loopback."""
    server = SMTPServer()
    server.start()
    send_through(settings, server.port)
    yield server
    server.stop()


@pytest.fixture
def trickling_smtp(settings):
    """A server that answers one byte every 0.4 s: well under the read timeout (5 s, which
    also bounds a whole TLS handshake), so only the send deadline (1 s) ends a send, before
    even a reply code is complete. `trickle` says at which stage."""
    server = TricklingSMTPServer(trickle=None, interval=0.4)
    send_through(settings, server.port)
    settings.EMAIL_TIMEOUT = 5
    settings.EMAIL_SEND_TIMEOUT = 1
    yield server
    server.stop()


@pytest.fixture
def trickling_provider(settings):
    """Postmark's API posed by a server on loopback that, when told to, answers one byte a
    second: under the read timeout (5 s), so only the send deadline (1 s) ends a send. The
    worker's provider session is made afresh for it and dropped after."""
    server = TricklingProviderAPI(trickle=None, interval=1)
    sending.close()
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "POSTMARK_SERVER_TOKEN": "server-token",
        "POSTMARK_API_URL": f"http://127.0.0.1:{server.port}/",
    }
    settings.EMAIL_TIMEOUT = 5
    settings.EMAIL_SEND_TIMEOUT = 1
    yield server
    sending.close()
    server.stop()


@pytest.fixture
def queue(db):
    """Queue an email as an app does (through the service), inside the test's transaction:
    the row is written, and its dispatch waits for a commit that does not come (in a
    transactional test it comes at once: autocommit)."""

    def make(to: str = "ada@example.com", *, name: str = "Ada", **kwargs):
        return services.queue_email("welcome", to=to, context={"name": name}, **kwargs)

    return make
