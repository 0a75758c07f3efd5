"""The pages the emailed links open, `/verify-email` and `/reset-password` with `?uid=&token=`,
for when no SPA answers them: the links are `{APP_BASE_URL}/<page>?...`, and APP_BASE_URL is
this server unless an SPA is configured. They are always served; an SPA on its own origin gets
the links and never sends anyone here.

Opening a link changes nothing: mail scanners and link previews fetch every link in an email.
The page checks the link (reading only) and shows a button or a form, in the account's language;
the POST does the work, through the services the API's endpoints use (services.verify_email,
services.reset_password), which record the same audit entries with origin `web`. The API itself
verifies by a POST too (POST /api/auth/verify-email/), so the pages follow its semantics. Both
methods are throttled per client IP with the API's anonymous auth endpoints (AUTH_THROTTLE_RATE),
and a bad, used or expired link answers 400 with a page saying so. The token stays in the query
of the page's own URL (the forms post back to it); the pages send a Referer to this server only
(their CSRF-checked forms need the Origin that a stricter policy would hide), and are neither
stored nor indexed.
"""

from functools import wraps

from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import get_language_from_request as language_of
from django.views.decorators.http import require_http_methods

from invoicegen.accounts import services
from invoicegen.accounts.forms import EmailLinkForm, NewPasswordForm
from invoicegen.accounts.tokens import email_verification_token, password_reset_token
from invoicegen.core.api import AuthThrottle
from invoicegen.core.pages import secret_url_page


def _throttled(request):
    with translation.override(language_of(request)):
        return render(request, "accounts/throttled.html", status=429)


def _invalid_link(request):
    return render(request, "accounts/invalid_link.html", status=400)


def _link(request) -> dict | None:
    """The link's `uid` and `token`, if its query holds both, each of a length the API takes."""
    form = EmailLinkForm(request.GET)
    return form.cleaned_data if form.is_valid() else None


def _email_link_page(generator):
    """A page of an emailed link made by `generator`. Opening it checks the link, reading only;
    a POST leaves the check to the service, which records a bad link as the API's endpoint
    does."""

    def decorator(view):
        @secret_url_page(AuthThrottle, _throttled, referrer_policy="same-origin")
        @require_http_methods(["GET", "HEAD", "POST"])
        @wraps(view)
        def wrapped(request):
            link = _link(request)
            user = link and services.find_user_of_link(**link, generator=generator)
            # In the account's language; a bad link's page, in the browser's.
            with translation.override(user.language if user else language_of(request)):
                if link is None or (request.method != "POST" and user is None):
                    return _invalid_link(request)
                return view(request, link)

        return wrapped

    return decorator


@_email_link_page(email_verification_token)
def verify_email(request, link: dict):
    if request.method == "POST":
        try:
            services.verify_email(**link)
        except ValidationError:
            return _invalid_link(request)
        return render(request, "accounts/email_verified.html")
    return render(request, "accounts/verify_email.html")


@_email_link_page(password_reset_token)
def reset_password(request, link: dict):
    if request.method != "POST":
        return render(request, "accounts/reset_password.html", {"form": NewPasswordForm()})
    form = NewPasswordForm(request.POST)
    if form.is_valid():
        try:
            services.reset_password(**link, new_password=form.cleaned_data["new_password1"])
        except ValidationError as error:
            if "token" in error.message_dict:
                return _invalid_link(request)
            form.add_error("new_password1", error.message_dict["new_password"])
        else:
            return render(request, "accounts/password_reset.html")
    return render(request, "accounts/reset_password.html", {"form": form}, status=400)
