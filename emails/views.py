"""The one-click unsubscribe URL of an email's `List-Unsubscribe` header (RFC 8058):
`/unsubscribe/<token>/`. A GET (a person following the link, or a mail scanner fetching it)
shows what would stop and changes nothing; a POST, which mail providers send with no session
and no CSRF token, stops it and answers 200. The token is a credential of sorts: it never
reaches a log line or the audit trail (invoicegen/core/redaction.py)."""

from django.http import HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from emails import unsubscribe as unsubscribes
from invoicegen.core.api import ClientIPThrottle
from invoicegen.core.pages import secret_url_page

TEMPLATE = "emails/unsubscribe.html"


class UnsubscribeThrottle(ClientIPThrottle):
    """Pages and bad tokens, per client IP. A one-click POST of a true token is never refused:
    mail providers post them from a few shared addresses, and a refused one is lost."""

    scope = "unsubscribe"

    def allow_request(self, request, view):
        token = request.path.removeprefix("/unsubscribe/").removesuffix("/")
        if request.method == "POST" and unsubscribes.is_signed(token):
            return True
        return super().allow_request(request, view)


def _page(request, state: str, status: int, stop=None):
    """In the email's language, or the browser's."""
    language = getattr(stop, "language", "") or translation.get_language_from_request(request)
    context = {"state": state, "stop": stop}
    with translation.override(language):
        return render(request, TEMPLATE, context, status=status)


def _throttled(request):
    return _page(request, "throttled", 429)


@csrf_exempt  # a mail provider posts it without a session; the signed token is the credential
@secret_url_page(UnsubscribeThrottle, _throttled)
def unsubscribe(request, token: str):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    try:
        wanted = unsubscribes.read_token(token.removesuffix("/"))
    except unsubscribes.InvalidToken:
        return _page(request, "invalid", 400)
    except unsubscribes.UnknownRecipient:
        return _page(request, "unknown", 404)
    if request.method == "POST":
        unsubscribes.unsubscribe(wanted)
        return _page(request, "done", 200, wanted)
    return _page(request, "confirm", 200, wanted)
