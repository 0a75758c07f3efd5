"""LOG_FORMAT=json (invoicegen/core/logs.py): one object a line, with the request id, and
secrets redacted from the message and the traceback. Real servers and a real worker writing
these lines: tests/test_server_logs.py and emails/tests/test_delivery_real.py."""

import io
import json
import logging

from audit.context import AuditContext, RequestIdFilter, bind
from invoicegen.core.logs import JSONFormatter
from invoicegen.core.redaction import RedactSecrets

SECRET = "k" * 43


def logged(emit) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for log_filter in (RedactSecrets(), RequestIdFilter()):  # as settings.LOGGING has them
        handler.addFilter(log_filter)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("tests.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_in_a_request_holds_its_id_and_no_secret():
    def emit(logger):
        with bind(AuditContext(request_id="req-9")):
            try:
                raise ValueError(f"no such link /downloads/{SECRET}/")
            except ValueError:
                logger.exception("failed on /downloads/%s/", SECRET)

    (line,) = logged(emit)

    assert line["request_id"] == "req-9"
    assert (line["level"], line["logger"]) == ("ERROR", "tests.json")
    assert line["message"] == "failed on /downloads/[redacted]/"
    assert "Traceback" in line["exception"] and "/downloads/[redacted]/" in line["exception"]
    assert SECRET not in json.dumps(line)
    assert line["time"].endswith("Z")


def test_a_line_outside_a_request_has_no_request_id():
    (line,) = logged(lambda logger: logger.warning("sealed %d entries", 3))

    assert line["message"] == "sealed 3 entries"
    assert "request_id" not in line
