"""The answer to a request the server could not complete (Django's handler500).

A database that is down or restarting is a moment, not a bug: the client is told to come back
(503 with Retry-After) rather than shown a server error. API paths answer JSON in DRF's shape;
other pages answer a plain page that needs nothing but the template (no database)."""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template import loader

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = "The service is briefly unavailable. Please try again in a few seconds."
FAILED = "A server error occurred."


def server_error(request):
    unavailable = isinstance(sys.exc_info()[1], OperationalError | InterfaceError)
    status = 503 if unavailable else 500
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": UNAVAILABLE if unavailable else FAILED}, status=status)
    else:
        response = HttpResponse(loader.render_to_string(f"{status}.html"), status=status)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
