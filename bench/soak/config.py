"""What the run is made of before anything starts: its ports, its secrets and the environment
every process of the product gets (the production settings of the README, on loopback)."""

import os
import secrets
import socket
from contextlib import ExitStack
from dataclasses import dataclass, field, fields

DATABASE = "invoicegen"
OWNER_ROLE = "invoicegen_owner"
APP_ROLE = "invoicegen_app"


@dataclass(frozen=True)
class Ports:
    postgres: int
    redis: int
    web: int
    storm: int  # a gunicorn of one worker, for the reconnect storm
    smtp: int  # the proxy in front of the mail sink
    asgi: int  # daphne, for the WebSockets

    @classmethod
    def pick(cls) -> "Ports":
        """Free loopback ports, held open together while they are chosen, so that no two of
        them are the same."""
        with ExitStack() as stack:
            probes = [stack.enter_context(socket.socket()) for _ in fields(cls)]
            for probe in probes:
                probe.bind(("127.0.0.1", 0))
            return cls(*(probe.getsockname()[1] for probe in probes))


def _secret() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Secrets:
    postgres: str = field(default_factory=_secret)
    roles: dict = field(default_factory=lambda: {OWNER_ROLE: _secret(), APP_ROLE: _secret()})
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    audit_hmac_key: str = field(default_factory=lambda: secrets.token_urlsafe(50))
    password: str = field(default_factory=_secret)  # of every account the load makes


def database_url(port: int, credentials: Secrets, role: str) -> str:
    password = credentials.postgres if role == "postgres" else credentials.roles[role]
    return f"postgres://{role}:{password}@127.0.0.1:{port}/{DATABASE}"


# Seconds the harness compresses: production's backoff (30 s doubling up to an hour) would
# outlast every fault window, so retries start at 2 s, top out at 10 s, and get enough attempts
# to outlive a 60 s outage of the mail server; a send's deadline is 10 s. Everything else
# keeps the product's defaults.
EMAIL_SETTINGS = {
    "EMAIL_RETRY_BASE_SECONDS": "2",
    "EMAIL_RETRY_MAX_SECONDS": "10",
    "EMAIL_MAX_ATTEMPTS": "12",
    "EMAIL_SEND_TIMEOUT": "10",
}

# Webhooks go to a receiver of the harness's, over http on loopback, which production refuses.
# A send's deadline of 5 s allows a lease of 21 s (the system check wants more than the task's
# time limit, 5 + 5 + 10 s): a killed worker's batch is free again well within a scenario.
WEBHOOK_SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
    "WEBHOOK_TIMEOUT": "5",
    "WEBHOOK_SENDING_LEASE_SECONDS": "21",
}


def product_environment(ports: Ports, credentials: Secrets) -> dict:
    """The production settings (DEBUG off, PostgreSQL, Redis, SMTP), every request a new
    database connection (CONN_MAX_AGE=0), and rates high enough that the load is never
    throttled."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="invoicegen.settings",
        DEBUG="false",
        SECRET_KEY=credentials.secret_key,
        AUDIT_HMAC_KEY=credentials.audit_hmac_key,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        APP_BASE_URL=f"http://127.0.0.1:{ports.web}",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url(ports.postgres, credentials, APP_ROLE),
        DATABASE_OWNER_URL=database_url(ports.postgres, credentials, OWNER_ROLE),
        CONN_MAX_AGE="0",
        REDIS_URL=f"redis://127.0.0.1:{ports.redis}/0",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(ports.smtp),
        SMTP_USE_TLS="false",
        FROM_EMAIL="billing@invoicegen.test",
        AUTH_THROTTLE_RATE="100000/min",
        AUTH_ACCOUNT_THROTTLE_RATE="100000/min",
        DOWNLOAD_THROTTLE_RATE="100000/min",
        NOTIFICATION_TEST_THROTTLE_RATE="100000/hour",
        WS_TICKET_THROTTLE_RATE="100000/min",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **EMAIL_SETTINGS,
        **WEBHOOK_SETTINGS,
    )
    return env
