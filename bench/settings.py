"""Benchmark settings: the product's, plus the peers measured beside it."""

from invoicegen.settings import *  # noqa: F403
from invoicegen.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "auditlog"]
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
SECURE_SSL_REDIRECT = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
ROOT_URLCONF = "bench.urls"
