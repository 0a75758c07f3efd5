"""Benchmark settings: the product's, plus the peers measured beside it (bench/peers)."""

from invoicegen.settings import *  # noqa: F403
from invoicegen.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "auditlog",
    "pgtrigger",
    "pghistory",
    "simple_history",
    "bench.peers",
]
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
SECURE_SSL_REDIRECT = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
ROOT_URLCONF = "bench.urls"

# pghistory's triggers live on the product's invoice table: kept out of migrations (which
# would otherwise gain an AddTrigger in billing) and installed by bench/capture.py per round.
PGTRIGGER_MIGRATIONS = False
PGTRIGGER_INSTALL_ON_MIGRATE = False
PGTRIGGER_PRUNE_ON_INSTALL = False
