"""The answers to a request no view completed: Django's handler400, handler404 and
handler500.

Under /api/ every answer is JSON in DRF's shape, a path no route matches (an id that is not a
number, a typo) included; other pages keep Django's.

A database that is down, restarting or refusing connections is a moment, not a bug: the client
is told to come back (503 with Retry-After) rather than shown a server error. Any other error,
a database one included (a missing table, a deadlock, a timeout), is a 500. API paths answer
JSON in DRF's shape; other pages answer a plain page that needs nothing but the template."""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "The service is briefly unavailable. Please try again in a few seconds."
FAILED = "A server error occurred."
# PostgreSQL: connection exceptions (class 08), the server shutting down or starting up,
# too many connections.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite: another process holds the database.
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")


def database_unavailable(error: BaseException | None) -> bool:
    if isinstance(error, InterfaceError):  # a connection already closed
        return True
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__
    state = getattr(cause, "sqlstate", None)
    if state is not None:
        return state.startswith(_UNAVAILABLE_STATES)
    if hasattr(cause, "sqlite_errorname"):
        return cause.sqlite_errorname in _BUSY
    return True  # psycopg could not connect at all: no state, as no server answered


def _is_api(request) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request, exception):
    """A request refused before any view: a Host header this server does not serve."""
    if _is_api(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request, exception):
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    unavailable = database_unavailable(sys.exc_info()[1])
    status = 503 if unavailable else 500
    if _is_api(request):
        response = JsonResponse({"detail": UNAVAILABLE if unavailable else FAILED}, status=status)
    else:
        response = HttpResponse(loader.render_to_string(f"{status}.html"), status=status)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
