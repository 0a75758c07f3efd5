"""`/notifications`, the page the digest email links to: the unread count and the recent
notifications, kept up to date over `/ws/notifications/` without a reload.

The HTML is the same for everyone and holds no one's data, so it needs no session: its script
signs in through the API (`POST /api/auth/login/`), keeps the token in sessionStorage (never in a
URL, never beyond the tab), reads through the API with it, and opens the WebSocket with a
single-use ticket. It is in the browser's language; the notifications are in the reader's, as
the API writes them."""

from django.shortcuts import render
from django.utils import translation
from django.utils.translation import get_language_from_request
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers


@require_safe
@vary_on_headers("Accept-Language", "Cookie")  # the language comes from either
def notifications_page(request):
    language = get_language_from_request(request)
    with translation.override(language):
        response = render(request, "notifications/page.html")
    response["Content-Language"] = language
    return response
