"""Settings for invoicegen, read from the environment (or a `.env` file) by django-environ.

The defaults make a fresh clone run on a laptop: SQLite, console email, an in-process cache and
Celery tasks run in process after commit. Production sets DEBUG=False, SECRET_KEY, DATABASE_URL,
REDIS_URL and SMTP_HOST; nothing else in the code changes.
"""

import base64
import hashlib
import re
from email.utils import parseaddr
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", parse_comments=True)

DEBUG = env.bool("DEBUG", default=True)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
# Unset: the address `make run` serves (its PORT).
APP_BASE_URL = env.str(
    "APP_BASE_URL", default=f"http://localhost:{env.int('PORT', default=8000)}"
).rstrip("/")
# An SPA on origins of its own (https://app.example.com) calls /api/ with its token, or with
# the session cookie and its CSRF token: django-cors-headers answers the browser's preflight and
# names the origin, and a session's unsafe request from there passes Django's origin check.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/api/.*$"
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-ID"]
CORS_PREFLIGHT_MAX_AGE = 3600
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=CORS_ALLOWED_ORIGINS)

INSTALLED_APPS = [
    "daphne",  # first: runserver serves the ASGI application (WebSockets too)
    "invoicegen.apps.AdminConfig",  # django.contrib.admin, its login protected
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "invoicegen.accounts",
    "invoicegen.billing",
    "invoicegen.dashboard",
    "audit",
    "notifications",
    "emails",
    "downloads",
    "webhooks",
]

MIDDLEWARE = [
    "invoicegen.core.health.HealthMiddleware",  # probes, before the host check: core/health.py
    "corsheaders.middleware.CorsMiddleware",  # before anything that may answer on its own
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "invoicegen.urls"
WSGI_APPLICATION = "invoicegen.wsgi.application"
ASGI_APPLICATION = "invoicegen.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite file by default; DATABASE_URL=postgres://... for PostgreSQL (psycopg 3).
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# `migrate` logs in as this role, which owns the tables; DATABASE_URL's role may then only read
# and append to the audit trail (audit/roles.py). Unset: the same role does both (a laptop).
DATABASE_OWNER = env.db_url_config(env.str("DATABASE_OWNER_URL", default=DATABASE_URL))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so concurrent writers queue
    # instead of failing with "database is locked" half-way; WAL lets readers run meanwhile.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # A server that drops packets costs a request (and /readyz) seconds, not the TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "invoicegen.core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# WebSocket pushes (notifications/realtime.py): through Redis between every ASGI process and
# worker; without REDIS_URL, in memory, within one process (`make run`).
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A connection's receive blocks on Redis for 5 s (BZPOPMIN): reads may take
                # longer than that (redis-py's default, 5 s, would cut idle connections off);
                # a burst of connects borrows a Redis connection each (redis-py's default pool
                # of 100 refuses the 101st instead of waiting).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_connect_timeout": 1,
                        "socket_timeout": 15,
                        "max_connections": env.int("CHANNEL_LAYER_MAX_CONNECTIONS", default=1000),
                    }
                ],
                "prefix": "invoicegen.ws",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_USER_MODEL = "accounts.User"
# Django's ModelBackend, refusing every login to a locked-out email (API and admin alike).
AUTHENTICATION_BACKENDS = ["invoicegen.accounts.backends.LockoutBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Verification and reset links stay valid for a day; each works once (see accounts/tokens.py).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=24 * 3600)
# This many failed logins for one email within AUTH_LOCKOUT_MINUTES lock it for that long.
AUTH_LOCKOUT_THRESHOLD = env.int("AUTH_LOCKOUT_THRESHOLD", default=10)
AUTH_LOCKOUT_MINUTES = env.int("AUTH_LOCKOUT_MINUTES", default=15)
# An API token unused for this many days stops working (each use renews it).
AUTH_TOKEN_TTL_DAYS = env.int("AUTH_TOKEN_TTL_DAYS", default=30)

LANGUAGE_CODE = "en-us"
# What reaches a person speaks their language (a user's, an invoice's client's): the catalogs
# are locale/<language>/LC_MESSAGES/django.po, compiled to .mo by `make` (gettext's msgfmt).
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times with seconds and zone wherever a template shows one (invoicegen/formats/).
FORMAT_MODULE_PATH = ["invoicegen.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Client IPs: X-Forwarded-For is honoured only through this many trusted proxies.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "invoicegen.accounts.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, bounded in depth, lone surrogates refused (a 400, never a 500).
    "DEFAULT_PARSER_CLASSES": ["invoicegen.core.api_defaults.StrictJSONParser"],
    "DEFAULT_METADATA_CLASS": "invoicegen.core.api_defaults.ActionAwareMetadata",
    "DEFAULT_PAGINATION_CLASS": "invoicegen.core.api.PageSizePagination",
    "DEFAULT_FILTER_BACKENDS": ["invoicegen.core.api.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "invoicegen.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "audit.security.exception_handler",
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "auth": env.str("AUTH_THROTTLE_RATE", default="20/min"),
        "login_account": env.str("AUTH_ACCOUNT_THROTTLE_RATE", default="10/min"),
        "notification_test": env.str("NOTIFICATION_TEST_THROTTLE_RATE", default="10/hour"),
        "download": env.str("DOWNLOAD_THROTTLE_RATE", default="60/min"),
        "unsubscribe": env.str("UNSUBSCRIBE_THROTTLE_RATE", default="30/min"),
        "ws_ticket": env.str("WS_TICKET_THROTTLE_RATE", default="30/min"),
        # Changes to webhook endpoints, rotations and replays (a replay is a request out).
        "webhook_action": env.str("WEBHOOK_ACTION_THROTTLE_RATE", default="30/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # `?format=` selects an export's file type (audit API), not a renderer.
    "URL_FORMAT_OVERRIDE": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "invoicegen API",
    "DESCRIPTION": "Invoices, subscriptions, notifications, audit trail and secure downloads.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A user's language and an invoice client's are one set: one enum in the schema.
    # Sets that spectacular would name alike (one DeliveryStatusEnum for an invoice's and a
    # webhook delivery's, one CurrencyEnum for what an invoice takes and what it keeps).
    "ENUM_NAME_OVERRIDES": {
        "LanguageEnum": "invoicegen.accounts.models.User.Language",
        "InvoiceDeliveryStatusEnum": "invoicegen.billing.timeline.DELIVERY_STATES",
        "CurrencyEnum": "invoicegen.billing.api.serializers.ISSUED_CURRENCIES",
        "CurrencyInputEnum": "invoicegen.billing.api.serializers.CURRENCY_CODES",
        "NotificationTypeEnum": "notifications.types.choices",
    },
}

# Email: the console unless SMTP_HOST is set.
SMTP_HOST = env.str("SMTP_HOST", default="")
if SMTP_HOST:
    EMAIL_BACKEND = "emails.smtp.EmailBackend"  # Django's, with a deadline on each send
    EMAIL_HOST = SMTP_HOST
    EMAIL_PORT = env.int("SMTP_PORT", default=587)
    EMAIL_HOST_USER = env.str("SMTP_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("SMTP_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("SMTP_USE_TLS", default=True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Or an email service provider's HTTP API through django-anymail (EMAIL_PROVIDER), each with its
# documented keys; its delivery events come in at /webhooks/email/<provider>/tracking/.
EMAIL_PROVIDERS = (
    "smtp", "amazon_ses", "brevo", "mailersend", "mailgun", "mailjet", "mandrill", "postal",
    "postmark", "resend", "sendgrid", "sparkpost",
)  # fmt: skip
EMAIL_PROVIDER = env.str("EMAIL_PROVIDER", default="smtp")
if EMAIL_PROVIDER not in EMAIL_PROVIDERS:
    raise ImproperlyConfigured(
        f"EMAIL_PROVIDER={EMAIL_PROVIDER!r} is none of {', '.join(EMAIL_PROVIDERS)}."
    )
if EMAIL_PROVIDER != "smtp":
    EMAIL_BACKEND = f"anymail.backends.{EMAIL_PROVIDER}.EmailBackend"
_ANYMAIL_KEYS = (
    "POSTMARK_SERVER_TOKEN", "MAILGUN_API_KEY", "MAILGUN_SENDER_DOMAIN", "MAILGUN_API_URL",
    "MAILGUN_WEBHOOK_SIGNING_KEY", "SENDGRID_API_KEY",
    "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY", "BREVO_API_KEY",
    "AMAZON_SES_CONFIGURATION_SET_NAME", "MAILERSEND_API_TOKEN",
    "MAILERSEND_SIGNING_SECRET", "MAILJET_API_KEY", "MAILJET_SECRET_KEY", "MANDRILL_API_KEY",
    "MANDRILL_WEBHOOK_KEY", "MANDRILL_WEBHOOK_URL", "POSTAL_API_URL", "POSTAL_API_KEY",
    "POSTAL_WEBHOOK_KEY", "RESEND_API_KEY", "RESEND_SIGNING_SECRET", "SPARKPOST_API_KEY",
)  # fmt: skip
ANYMAIL = {key: env.str(key) for key in _ANYMAIL_KEYS if env.str(key, default="")}
# Basic auth ("user:password") that every provider's webhook must present.
ANYMAIL["WEBHOOK_SECRET"] = env.list("ANYMAIL_WEBHOOK_SECRET", default=[])
# Refused webhook posts (failed authentication) from one client IP before its posts are
# answered 429 without their provider's checks, until the window ends.
WEBHOOK_REFUSED_THROTTLE_RATE = env.str("WEBHOOK_REFUSED_THROTTLE_RATE", default="30/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", WEBHOOK_REFUSED_THROTTLE_RATE):
    raise ImproperlyConfigured(
        f"WEBHOOK_REFUSED_THROTTLE_RATE={WEBHOOK_REFUSED_THROTTLE_RATE!r} is not a rate such as "
        "30/min (a count, then s, min, hour or day)."
    )
# Each API request's connect and read timeouts, well within the outbox's lease.
ANYMAIL["REQUESTS_TIMEOUT"] = EMAIL_TIMEOUT
# boto3 (Amazon SES) ignores REQUESTS_TIMEOUT: its own timeouts (60 s each) and retries would
# outlast the lease. One attempt a send: the outbox retries.
ANYMAIL["AMAZON_SES_CLIENT_PARAMS"] = {
    "config": {
        "connect_timeout": EMAIL_TIMEOUT,
        "read_timeout": EMAIL_TIMEOUT,
        "retries": {"total_max_attempts": 1},
    },
}
if AMAZON_SES_REGION := env.str("AMAZON_SES_REGION", default=""):
    ANYMAIL["AMAZON_SES_CLIENT_PARAMS"]["region_name"] = AMAZON_SES_REGION
# A hard deadline on one send (connect, greeting, dialogue, data): EMAIL_TIMEOUT bounds each
# read only, and a server trickling bytes would hold a worker for ever.
EMAIL_SEND_TIMEOUT = env.int("EMAIL_SEND_TIMEOUT", default=20)
DEFAULT_FROM_EMAIL = env.str("FROM_EMAIL", default="noreply@invoicegen.local")
# An email sent for an account (a document to its client) is from "<account name> via <this>".
EMAIL_SENDER_NAME = env.str("EMAIL_SENDER_NAME", default="invoicegen")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The mailto of List-Unsubscribe (RFC 2369), beside its one-click URL: a mailbox whose messages
# (subject "unsubscribe <token>") someone reads; the URL is what mail providers use.
EMAIL_UNSUBSCRIBE_ADDRESS = env.str(
    "EMAIL_UNSUBSCRIBE_ADDRESS",
    default=f"unsubscribe@{parseaddr(DEFAULT_FROM_EMAIL)[1].rpartition('@')[2]}",
)
# The outbox (emails/): attempts before a row is failed, backoff between them, how long a row
# may stay `sending` before it is taken back (a killed worker; it must outlast the delivery
# task's time limit, EMAIL_SEND_TIMEOUT + EMAIL_SEND_BATCH_SECONDS + 10 s), how often the
# sweeper looks, and how many due rows a delivery takes along with its own, for how long.
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=6)
EMAIL_RETRY_BASE_SECONDS = env.float("EMAIL_RETRY_BASE_SECONDS", default=30)
EMAIL_RETRY_MAX_SECONDS = env.float("EMAIL_RETRY_MAX_SECONDS", default=3600)
EMAIL_SENDING_LEASE_SECONDS = env.int("EMAIL_SENDING_LEASE_SECONDS", default=45)
EMAIL_SWEEP_INTERVAL_SECONDS = env.float("EMAIL_SWEEP_INTERVAL_SECONDS", default=15)
EMAIL_SEND_BATCH = env.int("EMAIL_SEND_BATCH", default=50)
EMAIL_SEND_BATCH_SECONDS = env.float("EMAIL_SEND_BATCH_SECONDS", default=5)

# Outgoing webhooks (webhooks/): the outbox's settings as emails' above. A 2xx within
# WEBHOOK_TIMEOUT is success; failures are retried after each step of the schedule (seconds:
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then the delivery has failed. An endpoint whose
# every attempt failed for WEBHOOK_DISABLE_AFTER_DAYS is disabled. Private, loopback and
# link-local addresses (cloud metadata) are refused unless WEBHOOK_ALLOW_PRIVATE_NETWORKS;
# http:// URLs only reach this machine, and only where WEBHOOK_ALLOW_HTTP_LOOPBACK (DEBUG).
WEBHOOK_TIMEOUT = env.int("WEBHOOK_TIMEOUT", default=15)
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=float, default=[5, 300, 1800, 7200, 18000, 36000, 36000]
)
WEBHOOK_MAX_ATTEMPTS = len(WEBHOOK_RETRY_SCHEDULE) + 1
WEBHOOK_SENDING_LEASE_SECONDS = env.int("WEBHOOK_SENDING_LEASE_SECONDS", default=45)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=15)
WEBHOOK_SEND_BATCH = env.int("WEBHOOK_SEND_BATCH", default=50)
WEBHOOK_SEND_BATCH_SECONDS = env.float("WEBHOOK_SEND_BATCH_SECONDS", default=5)
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=5)
# Sent and failed deliveries (with their attempts) are deleted this long after they were made.
WEBHOOK_DELIVERY_RETENTION_DAYS = env.int("WEBHOOK_DELIVERY_RETENTION_DAYS", default=30)
WEBHOOK_SECRET_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_OVERLAP_HOURS", default=24)
WEBHOOK_MAX_ENDPOINTS = env.int("WEBHOOK_MAX_ENDPOINTS", default=20)
WEBHOOK_MAX_PAYLOAD_BYTES = env.int("WEBHOOK_MAX_PAYLOAD_BYTES", default=256 * 1024)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_ALLOW_HTTP_LOOPBACK = env.bool("WEBHOOK_ALLOW_HTTP_LOOPBACK", default=DEBUG)
WEBHOOK_USER_AGENT = "invoicegen-webhooks/1.0"
TEMPLATED_EMAIL_TEMPLATE_DIR = "email/"
TEMPLATED_EMAIL_FILE_EXTENSION = "email"

# Audit trail
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
# PCI DSS 10.5.1 keeps twelve months of audit history: nothing may prune younger entries.
AUDIT_MIN_RETENTION_DAYS = env.int("AUDIT_MIN_RETENTION_DAYS", default=365)
# Categories kept longer or shorter than AUDIT_RETENTION_DAYS, as "security=730,billing=3650"
# (each at least AUDIT_MIN_RETENTION_DAYS: a system check says so).
_BY_CATEGORY = env.str("AUDIT_RETENTION_DAYS_BY_CATEGORY", default="")
if not re.fullmatch(r"(\s*[a-z_]+\s*=\s*[0-9]{1,6}\s*(,|$))*", _BY_CATEGORY):
    raise ImproperlyConfigured(
        f"AUDIT_RETENTION_DAYS_BY_CATEGORY={_BY_CATEGORY!r} is not a list such as "
        "security=730,billing=3650 (a category, =, days; commas between)."
    )
AUDIT_RETENTION_DAYS_BY_CATEGORY = {
    name.strip(): int(days)
    for name, days in (item.split("=") for item in _BY_CATEGORY.split(",") if item.strip())
}
# The HMAC key of row digests and checkpoints. Set it explicitly in production and keep it
# apart from the database: whoever holds it can re-seal a tampered trail. Changing it makes
# existing entries fail verification.
# Recording an action no app registered raises (a bug to see at once) instead of being logged.
AUDIT_STRICT_ACTIONS = env.bool("AUDIT_STRICT_ACTIONS", default=DEBUG)
AUDIT_HMAC_KEY = env.str("AUDIT_HMAC_KEY", default="") or f"audit:{SECRET_KEY}"
# How often new entries are sealed into a checkpoint (so none stays unsealed a minute), and
# where each checkpoint is copied out of the database besides the log: a file path or an
# http(s):// URL (audit/sink.py).
AUDIT_SEAL_INTERVAL_SECONDS = env.float("AUDIT_SEAL_INTERVAL_SECONDS", default=30)
AUDIT_CHECKPOINT_SINK = env.str("AUDIT_CHECKPOINT_SINK", default="")
AUDIT_CHECKPOINT_SINK_TIMEOUT = env.float("AUDIT_CHECKPOINT_SINK_TIMEOUT", default=5)
AUDIT_CLEANUP_BATCH_SIZE = env.int("AUDIT_CLEANUP_BATCH_SIZE", default=10000)
# PostgreSQL: monthly partitions of the entries made this far ahead (audit/partitions.py).
AUDIT_PARTITION_MONTHS_AHEAD = env.int("AUDIT_PARTITION_MONTHS_AHEAD", default=3)
# The archive of ended months (audit/archive.py): signed with an Ed25519 key given as its
# 32-byte seed in base64 (`manage.py audit_archive_key --new` makes one and prints its public
# key). Set it in production and keep it apart from the database; the default derived from
# SECRET_KEY suits a laptop only. The archive goes to a folder, or to an S3-compatible bucket
# when one is named (credentials as boto3 finds them: AWS_ACCESS_KEY_ID, a role, ...).
AUDIT_ARCHIVE_SIGNING_KEY = (
    env.str("AUDIT_ARCHIVE_SIGNING_KEY", default="")
    or base64.b64encode(hashlib.sha256(f"audit-archive:{SECRET_KEY}".encode()).digest()).decode()
)
AUDIT_ARCHIVE_ROWS_PER_FILE = env.int("AUDIT_ARCHIVE_ROWS_PER_FILE", default=1_000_000)
AUDIT_ARCHIVE_DIR = env.path("AUDIT_ARCHIVE_DIR", default=BASE_DIR / "var" / "audit-archive")
AUDIT_ARCHIVE_S3_BUCKET = env.str("AUDIT_ARCHIVE_S3_BUCKET", default="")
AUDIT_ARCHIVE_S3_PREFIX = env.str("AUDIT_ARCHIVE_S3_PREFIX", default="audit-archive")
AUDIT_ARCHIVE_S3_ENDPOINT_URL = env.str("AUDIT_ARCHIVE_S3_ENDPOINT_URL", default="") or None
AUDIT_ARCHIVE_S3_REGION = env.str("AUDIT_ARCHIVE_S3_REGION", default="") or None
# Each call to the bucket ends within this many seconds (connect and each read).
AUDIT_ARCHIVE_S3_TIMEOUT = env.float("AUDIT_ARCHIVE_S3_TIMEOUT", default=30)
# Where the bucket has Object Lock, each archive file is locked this long (in its default
# retention's mode, or COMPLIANCE): nobody, the bucket's owner included, can delete it sooner.
AUDIT_ARCHIVE_LOCK_DAYS = env.int("AUDIT_ARCHIVE_LOCK_DAYS", default=3650)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "audit_archive": (
        {
            "BACKEND": "audit.archive_storage.ArchiveS3Storage",
            "OPTIONS": {
                "bucket_name": AUDIT_ARCHIVE_S3_BUCKET,
                "location": AUDIT_ARCHIVE_S3_PREFIX,
                "endpoint_url": AUDIT_ARCHIVE_S3_ENDPOINT_URL,
                "region_name": AUDIT_ARCHIVE_S3_REGION,
                "file_overwrite": False,
            },
        }
        if AUDIT_ARCHIVE_S3_BUCKET
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": AUDIT_ARCHIVE_DIR},
        }
    ),
}
AUDIT_BRUTE_FORCE_WINDOW_SECONDS = env.int("AUDIT_BRUTE_FORCE_WINDOW_SECONDS", default=900)
AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD = env.int("AUDIT_BRUTE_FORCE_ACCOUNT_THRESHOLD", default=5)
AUDIT_BRUTE_FORCE_IP_THRESHOLD = env.int("AUDIT_BRUTE_FORCE_IP_THRESHOLD", default=20)

# Secure downloads
DOWNLOAD_TOKEN_TTL_HOURS = env.int("DOWNLOAD_TOKEN_TTL_HOURS", default=24)
DOWNLOAD_TOKEN_MAX_DOWNLOADS = env.int("DOWNLOAD_TOKEN_MAX_DOWNLOADS", default=5)
# Expired links and their events are deleted this many days after they expire.
DOWNLOAD_TOKEN_RETENTION_DAYS = env.int("DOWNLOAD_TOKEN_RETENTION_DAYS", default=90)

# Celery: Redis in production; with no broker configured tasks run in process (after commit).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request that queues a task must not hang on a broker that is down: publishing fails fast
# and the outbox row waits for the sweeper instead.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY = False
# A message not acknowledged within this time is redelivered: it must exceed every countdown
# and ETA a task is given, or a delayed task would run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 14 * 3600,  # a webhook's last retry: 10 h, jittered up to 12.5 h
    "max_retries": 0,  # a publish to a broker that is down fails at once (workers reconnect)
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "redispatch-pending-emails": {
        "task": "emails.tasks.redispatch_pending_emails",
        "schedule": EMAIL_SWEEP_INTERVAL_SECONDS,
    },
    "redispatch-pending-webhooks": {
        "task": "webhooks.tasks.redispatch_pending_webhooks",
        "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    },
    "purge-old-webhook-deliveries": {
        "task": "webhooks.tasks.purge_old_webhook_deliveries",
        "schedule": crontab(hour=4, minute=27),
    },
    "purge-expired-download-tokens": {
        "task": "downloads.tasks.purge_expired_tokens",
        "schedule": crontab(hour=4, minute=7),
    },
    "seal-audit-log": {
        "task": "audit.tasks.seal_audit_log",
        "schedule": AUDIT_SEAL_INTERVAL_SECONDS,
    },
    # The recent months hourly, the whole trail weekly (a run a restart cut short goes on).
    "verify-audit-log": {
        "task": "audit.tasks.verify_recent_audit_log",
        "schedule": crontab(minute=41),
    },
    "verify-whole-audit-log": {
        "task": "audit.tasks.verify_audit_log",
        "schedule": crontab(day_of_week=0, hour=5, minute=11),
    },
    "add-audit-partitions": {
        "task": "audit.tasks.add_audit_partitions",
        "schedule": crontab(hour=2, minute=53),
    },
    "archive-audit-log": {
        "task": "audit.tasks.archive_audit_log",
        "schedule": crontab(hour=2, minute=13),
    },
    "cleanup-audit-logs": {
        "task": "audit.tasks.cleanup_audit_logs",
        "schedule": crontab(hour=3, minute=17),
    },
    "purge-expired-auth-tokens": {
        "task": "invoicegen.accounts.tasks.purge_expired_auth_tokens",
        "schedule": crontab(hour=4, minute=37),
    },
    "count-audit-days": {
        "task": "invoicegen.dashboard.tasks.count_audit_days",
        "schedule": crontab(minute=23),
    },
    "send-notification-digests": {
        "task": "notifications.tasks.send_notification_digests",
        "schedule": crontab(minute="*/15"),
    },
    # Reminders leave in the morning; the task sends only what is due, so any hour is safe.
    "send-invoice-reminders": {
        "task": "invoicegen.billing.tasks.send_due_reminders",
        "schedule": crontab(hour=9, minute=0),
    },
    "expire-subscriptions": {
        "task": "invoicegen.billing.tasks.expire_subscriptions",
        "schedule": 3600.0,
    },
}

# Production hardening; `manage.py check --deploy` is clean with DEBUG=False.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
if env.bool("BEHIND_TLS_PROXY", default=False):
    # The proxy terminates TLS and says so in this header; trust it only behind such a proxy.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# `text`: the message alone, as Django prints it; `json`: one object per line with the time,
# level, logger, request id and traceback (invoicegen/core/logs.py), Celery's lines too.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Request lines and paths name download tokens (`/downloads/<token>/`): redacted.
    "filters": {
        "redact_secrets": {"()": "invoicegen.core.redaction.RedactSecrets"},
        "request_id": {"()": "audit.context.RequestIdFilter"},
    },
    "formatters": {"json": {"()": "invoicegen.core.logs.JSONFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact_secrets", "request_id"],
            **({"formatter": "json"} if LOG_FORMAT == "json" else {}),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Django's default handlers for these (runserver's request lines, errors to the console and
    # to ADMINS) would print the path unredacted: their records go through the console instead.
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
    },
}
# In JSON, a Celery worker's lines go through LOGGING like the rest; its own text otherwise.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
