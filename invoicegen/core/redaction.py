"""Secrets out of what is kept: the paths in audit entries and every log line a server writes.

A download link carries its token in the path (`/downloads/<token>/`), and the links clients
already hold keep that form, as an email's unsubscribe link does (`/unsubscribe/<token>/`): the
token is in every request line, Referer and error message about it; verification and reset
links carry theirs in the query (`uid`, `token`). One set of patterns serves the audit trail
(audit.context), Django's loggers (`RedactSecrets` in settings.LOGGING) and gunicorn's
(gunicorn.conf.py).
"""

import logging
import re

REDACTED = "[redacted]"


def _as_sent_or_percent_encoded(text: str) -> str:
    """A pattern for `text` with any of its characters percent-encoded: the server decodes the
    path before routing, so `/%64ownloads%2F<token>/` opens the same link as the plain form."""
    return "".join(f"(?:{re.escape(char)}|%{ord(char):02x})" for char in text)


# Path segments that are credentials (a download token, an unsubscribe token) and query values
# that are; each ends where a URL part ends, or where a URL ends inside a log line (a space, a
# quote).
_SECRET_PATHS = "|".join(map(_as_sent_or_percent_encoded, ("/downloads/", "/unsubscribe/")))
_SECRET_IN_PATH = re.compile(rf"((?:{_SECRET_PATHS}))/*[^/?#\s\"']+", re.IGNORECASE)
_SECRET_IN_QUERY = re.compile(r"(\b(?:token|uid|key|password|ticket)=)[^&#\s\"']*", re.IGNORECASE)


def redact_secrets(text: str) -> str:
    text = _SECRET_IN_PATH.sub(rf"\g<1>{REDACTED}", text)
    return _SECRET_IN_QUERY.sub(rf"\g<1>{REDACTED}", text)


_traceback_formatter = logging.Formatter()


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message or traceback holds a secret, before any handler formats
    it: the request line of a development server, "Internal Server Error: <path>", gunicorn's
    access lines and "Error handling request <uri>". The record itself changes, so every
    handler after this filter (and every logger it propagates to) sees only the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: its parts, instead of a traceback
            message = f"{record.msg} {record.args}"
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            exc_text = redact_secrets(record.exc_text)
            if exc_text != record.exc_text:
                # The exception itself holds the secret: no formatter may print it again.
                record.exc_text, record.exc_info = exc_text, None
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True
