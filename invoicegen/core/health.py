"""Liveness and readiness for load balancers and orchestrators.

- `GET /healthz`: the process answers (no I/O at all).
- `GET /readyz`: each part this process needs answers: the database, and the cache and the
  Celery broker when they are configured. 503 names the parts that did not; the reasons go to
  the log, not to the caller.

Both are answered by the first middleware: a probe comes by the instance's own address over
plain HTTP, so it passes before the host check and the HTTPS redirect, and it is neither a
user's action (no audit context, no session) nor something to throttle.
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from invoicegen.core.errors import RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

LIVE = ("/healthz", "/healthz/")
READY = ("/readyz", "/readyz/")


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.get("readyz")  # a round trip to Redis; raises when it cannot connect


def _broker() -> None:
    from invoicegen.celery import app

    with app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
        broker.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)


def checks() -> dict:
    """The parts to check: the cache and the broker only where they are configured (without
    them the cache is in process and tasks run in process)."""
    parts = {"database": _database}
    if settings.REDIS_URL:
        parts["cache"] = _cache
    if settings.CELERY_BROKER_URL:
        parts["broker"] = _broker
    return parts


def readiness() -> tuple[dict, list[str]]:
    results, failed = {}, []
    for name, check in checks().items():
        try:
            check()
        except Exception as error:  # any failure means "not ready"
            logger.warning("readiness: %s failed: %s", name, type(error).__name__)
            results[name] = "unavailable"
            failed.append(name)
        else:
            results[name] = "ok"
    return results, failed


def _answer(body: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def probe(request) -> JsonResponse | None:
    """The answer to a probe, or None for any other path."""
    path = request.path_info
    if path not in LIVE and path not in READY:
        return None
    if request.method not in ("GET", "HEAD"):
        response = _answer({"detail": f'Method "{request.method}" not allowed.'}, 405)
        response["Allow"] = "GET, HEAD"
        return response
    if path in LIVE:
        return _answer({"status": "ok"})
    results, failed = readiness()
    if not failed:
        return _answer({"status": "ok", "checks": results})
    response = _answer({"status": "unavailable", "failed": failed, "checks": results}, 503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class HealthMiddleware:
    """First in MIDDLEWARE: answers /healthz and /readyz, passes everything else on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return probe(request) or self.get_response(request)
