"""Gunicorn's settings for invoicegen. Gunicorn reads this file from the directory it starts in,
the repository: `.venv/bin/gunicorn invoicegen.wsgi --bind 127.0.0.1:8000 --workers 3`. From
elsewhere, name it: `--chdir <repository> -c <repository>/gunicorn.conf.py`.

Download links carry their token in the path (`/downloads/<token>/`), so gunicorn's own lines
would copy it: the access log's request line, path, query, Referer and any header or environ
atom an `--access-logformat` names, and the error log's "Error handling request <uri>" and
"Invalid request ..." lines. Its logger here redacts them all, and with LOG_FORMAT=json writes
them as the application does, one JSON object a line (invoicegen/core/logs.py).
"""

import os

from gunicorn.glogging import Logger

from invoicegen.core.logs import AnsweredRequestId, JSONFormatter
from invoicegen.core.redaction import RedactSecrets

_redact_secrets = RedactSecrets()
_answered_request_id = AnsweredRequestId()


def _log_format() -> str:
    """LOG_FORMAT as the application reads it (the environment or .env)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "invoicegen.settings")
    from django.conf import settings

    return settings.LOG_FORMAT


class RedactingLogger(Logger):
    """Gunicorn's logger with secrets redacted from every record of its two loggers. The filter
    sits on the loggers, not on a handler, so every handler gets the redacted line: a file,
    stdout, syslog, or those of a `logconfig_dict`. Adding the same filter again (setup runs
    again on a reload) is a no-op."""

    def setup(self, cfg):
        super().setup(cfg)
        json_lines = _log_format() == "json"
        self.access_log.addFilter(_answered_request_id)  # before the redaction drops the atoms
        for log in (self.error_log, self.access_log):
            log.addFilter(_redact_secrets)
            for handler in log.handlers if json_lines else ():
                handler.setFormatter(JSONFormatter())


logger_class = RedactingLogger
# Access lines on stdout (the service manager's journal), redacted like the rest.
accesslog = "-"
