"""LOG_FORMAT=json: one JSON object per line, for a log shipper (Loki, CloudWatch, Datadog).

Each line holds `time` (UTC, ISO 8601), `level`, `logger`, `message` (redacted: the
RedactSecrets filter runs first), `request_id` when the line belongs to a request or to a task
it queued (set by a filter of the app that knows the request, audit.context.RequestIdFilter;
gunicorn's access lines take the answer's `X-Request-ID`: AnsweredRequestId), and `exception`
with the traceback.
"""

import datetime
import json
import logging


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            line["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class AnsweredRequestId(logging.Filter):
    """Gunicorn's access line takes the request id from the answer's `X-Request-ID` (its atoms);
    put before the redaction, which drops the atoms of a line it rewrites."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args if isinstance(record.args, dict) else {}
        value = atoms.get("{x-request-id}o", "")
        if value not in ("", "-"):  # gunicorn writes "-" for a missing one
            record.request_id = str(value)
        return True
