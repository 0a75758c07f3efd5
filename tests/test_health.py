"""GET /healthz and /readyz (invoicegen/core/health.py), against the real database, Redis and
broker, and against ports where nothing listens."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings

from audit.models import AuditLog
from audit.roles import reconnected

NOTHING_LISTENS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_answers_without_touching_anything(client, path):
    response = client.get(path)  # no django_db mark: a query would raise

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert "sessionid" not in response.cookies


@pytest.mark.django_db
def test_a_probe_by_address_over_plain_http_is_answered_and_not_audited(client):
    """A load balancer asks by the instance's address, over HTTP, behind no proxy headers."""
    with override_settings(ALLOWED_HOSTS=["invoices.example.com"], SECURE_SSL_REDIRECT=True):
        live = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")
        ready = client.get("/readyz", HTTP_HOST="10.0.0.7:8000")
        other = client.get("/api/invoices/", HTTP_HOST="10.0.0.7:8000")

    assert (live.status_code, ready.status_code) == (200, 200)
    assert other.status_code == 400  # the host check still guards everything else
    assert other.json() == {"detail": "Bad request."}  # in the API's shape under /api/
    assert not AuditLog.objects.exists()


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch", "options"])
def test_probes_take_get_and_head_only(client, method):
    response = getattr(client, method)("/readyz")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {"detail": f'Method "{method.upper()}" not allowed.'}


@pytest.mark.django_db
def test_readyz_checks_each_configured_part(client):
    response = client.head("/readyz")
    assert response.status_code == 200

    body = client.get("/readyz").json()

    expected = {"database": "ok"}
    if settings.REDIS_URL:
        expected["cache"] = "ok"
    if settings.CELERY_BROKER_URL:
        expected["broker"] = "ok"
    assert body == {"status": "ok", "checks": expected}


@pytest.mark.django_db
def test_readyz_names_a_cache_that_does_not_answer(client, caplog):
    cache_down = {
        "default": {
            "BACKEND": "invoicegen.core.cache.RedisCache",
            "LOCATION": NOTHING_LISTENS,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with override_settings(REDIS_URL=NOTHING_LISTENS, CACHES=cache_down, CELERY_BROKER_URL=""):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "status": "unavailable",
        "failed": ["cache"],
        "checks": {"database": "ok", "cache": "unavailable"},
    }
    assert "readiness: cache failed: ConnectionError" in caplog.text


@pytest.mark.django_db
def test_readyz_names_a_broker_that_does_not_answer(client):
    with override_settings(REDIS_URL="", CELERY_BROKER_URL=NOTHING_LISTENS):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    assert response.json()["checks"] == {"database": "ok", "broker": "unavailable"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="an in-memory SQLite database cannot go away"
)
def test_readyz_names_a_database_that_does_not_answer(client):
    parts = override_settings(REDIS_URL="", CELERY_BROKER_URL="")
    with parts, reconnected(connection, HOST="127.0.0.1", PORT="1"):
        response = client.get("/readyz")
        live = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "failed": ["database"],
        "checks": {"database": "unavailable"},
    }
    assert live.status_code == 200  # the process itself is alive
