"""Pages whose URL holds a secret: a download token, the token of an emailed link."""

from functools import wraps


def secret_url_page(throttle_class, throttled, *, referrer_policy="no-referrer"):
    """Throttles the page per client IP (`throttled(request)` answers a refused request, here
    given its Retry-After) and gives every answer the headers such a page needs: not stored, not
    indexed, no Referer that would carry the URL to another site. A page whose forms need
    Django's CSRF check takes `same-origin`: under `no-referrer` browsers send `Origin: null`
    with the form, which the check refuses. Django's own line about a 4xx answer is left out: it
    would copy the path, and with it a secret the path holds."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            throttle = throttle_class()
            if not throttle.allow_request(request, None):
                response = throttled(request)
                response["Retry-After"] = str(int(throttle.wait() or 1))
            else:
                response = view(request, *args, **kwargs)
            response["Cache-Control"] = "no-store"
            response["Referrer-Policy"] = referrer_policy
            response["X-Content-Type-Options"] = "nosniff"
            response["X-Robots-Tag"] = "noindex, nofollow"
            response._has_been_logged = True
            return response

        return wrapped

    return decorator
