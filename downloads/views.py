"""The public link `/downloads/<token>/`: GET shows a landing page and consumes nothing (mail
scanners and link previews fetch every link), counting a view when a person other than the
link's owner opens it; POST spends one download and returns the file.
The raw token is a credential: it never reaches a log line, the audit trail or an error page.
"""

import re
from contextlib import suppress

from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import csrf_exempt

from downloads import services, visitors
from invoicegen.core.api import ClientIPThrottle
from invoicegen.core.pages import secret_url_page

TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
STATUS = {
    services.Reason.UNKNOWN: 404,
    services.Reason.EXPIRED: 410,
    services.Reason.REVOKED: 410,
    services.Reason.EXHAUSTED: 410,
}


class DownloadThrottle(ClientIPThrottle):
    scope = "download"


def _page(request, template, context, status):
    """In the language of what the link is to (its owner registered it), or the browser's."""
    language = context.get("language") or translation.get_language_from_request(request)
    with translation.override(language):
        return render(request, template, context, status=status)


def _denied(request, denial: services.DownloadDenied):
    """Why the link cannot be used; a link that exists, in the language of what it is to."""
    context = {
        "reason": denial.reason,
        "revoked_reason": getattr(denial.token, "revoked_reason", ""),
    }
    if denial.token is not None:
        with suppress(ObjectDoesNotExist):  # what it was to is gone: the browser's language
            described = services.resource_of(denial.token).describe(denial.token.resource_id)
            context["language"] = described.get("language")
    return _page(request, "downloads/denied.html", context, STATUS[denial.reason])


def _throttled(request):
    return _page(request, "downloads/denied.html", {"reason": "throttled"}, 429)


def _owners_usable_link(request, token: str):
    """The link, if it can be used and its owner is the one looking; else None (and
    redeem_token decides, recording the refusal if there is one)."""
    try:
        link = services.inspect_token(token)
    except services.DownloadDenied:
        return None
    return link if _owner_is_looking(request, link) else None


def _owner_is_looking(request, link) -> bool:
    user, preview = getattr(request, "user", None), request.GET.get("preview", "")
    return services.is_owner_preview(link, user=user, preview=preview)


@csrf_exempt  # the token in the URL is the credential; there is no session to protect
@secret_url_page(DownloadThrottle, _throttled)
def download(request, token: str):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    token = token.removesuffix("/")
    if not TOKEN.fullmatch(token):
        return _denied(request, services.DownloadDenied(services.Reason.UNKNOWN))
    if request.method == "POST":
        try:
            # The owner's own download (from their preview) uses none of the client's.
            link = _owners_usable_link(request, token) or services.redeem_token(token)
        except services.DownloadDenied as denial:
            return _denied(request, denial)
        filename, content = services.resource_of(link).render(link.resource_id)
        response = HttpResponse(content, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    try:
        link = services.inspect_token(token)
    except services.DownloadDenied as denial:
        return _denied(request, denial)
    if not visitors.is_automated(request) and not _owner_is_looking(request, link):
        services.record_view(link)
    details = services.resource_of(link).describe(link.resource_id)
    return _page(request, "downloads/landing.html", {"link": link, **details}, 200)
