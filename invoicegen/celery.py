"""The Celery application: settings come from Django's (CELERY_* names), tasks from each app."""

import functools
import os

from celery import Celery
from kombu import Connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "invoicegen.settings")

app = Celery("invoicegen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _forget_collected_channel(collect):
    """When a worker loses the broker, celery 5.7.0 collects its connection and then closes
    it; `collect()` drops the connection's transport but keeps its default channel, whose close
    then gives back the messages the worker held (a retry waiting for its time) through the
    dropped transport, raises AttributeError, and the worker exits. The channel went with its
    transport: forget it (as a reconnection does), and the worker reconnects when the broker is
    back. What it held is the broker's to give back, and the outbox's sweeper sends its rows.
    emails/tests/test_delivery_real.py shows the exit without this."""

    @functools.wraps(collect)
    def collect_and_forget(self, *args, **kwargs):
        try:
            return collect(self, *args, **kwargs)
        finally:
            self._default_channel = None

    return collect_and_forget


Connection.collect = _forget_collected_channel(Connection.collect)
