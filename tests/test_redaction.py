"""Secrets in URLs are redacted from what is kept: any text (`redact_secrets`), any log record
(`RedactSecrets`), and the records of Django's own loggers as settings.LOGGING routes them."""

import io
import logging
import sys

import pytest

from invoicegen.core.redaction import RedactSecrets, redact_secrets

RAW = "kF3x9Q_-b2ZpL0aV7mN4cR8tY1wE6uI5oP2sD3fG4hJ"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"/downloads/{RAW}/", "/downloads/[redacted]/"),
        (f"/downloads/{RAW}", "/downloads/[redacted]"),
        (
            f"https://invoices.example/downloads/{RAW}/).",
            "https://invoices.example/downloads/[redacted]/).",
        ),
        (f"/%64ownloads%2F{RAW}/", "/%64ownloads%2F[redacted]/"),
        (f"/downloads/{RAW}/?token={RAW}&page=2", "/downloads/[redacted]/?token=[redacted]&page=2"),
        (f"/reset?uid=MTIz&token={RAW}", "/reset?uid=[redacted]&token=[redacted]"),
        (f"q=token={RAW}", "q=token=[redacted]"),
        (
            f'127.0.0.1 - - "GET /downloads/{RAW} HTTP/1.1" 200 512 "-" "curl/8"',
            '127.0.0.1 - - "GET /downloads/[redacted] HTTP/1.1" 200 512 "-" "curl/8"',
        ),
        ("/api/invoices/12/download-links/", "/api/invoices/12/download-links/"),
        ("/downloads/", "/downloads/"),
    ],
)
def test_redact_secrets_hides_tokens_in_paths_and_queries_and_keeps_the_rest(text, redacted):
    assert redact_secrets(text) == redacted


def record(msg, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("django.request", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_a_record_with_a_token_is_rewritten_redacted_for_every_handler():
    entry = record("Internal Server Error: %s", f"/downloads/{RAW}/")

    assert RedactSecrets().filter(entry) is True
    assert (entry.msg, entry.args) == ("Internal Server Error: /downloads/[redacted]/", ())
    assert entry.getMessage() == "Internal Server Error: /downloads/[redacted]/"


def test_a_record_without_a_secret_is_left_as_it_was():
    args = ("/api/invoices/1/",)
    entry = record("Not Found: %s", *args)

    RedactSecrets().filter(entry)

    assert (entry.msg, entry.args) == ("Not Found: %s", args)


def raised(error: Exception):
    try:
        raise error
    except type(error):
        return sys.exc_info()


def test_a_traceback_that_names_a_token_is_redacted_and_its_exception_dropped():
    entry = record("Error handling request", exc_info=raised(ValueError(f"/downloads/{RAW}/")))

    RedactSecrets().filter(entry)

    assert RAW not in logging.Formatter().format(entry)
    assert "ValueError: /downloads/[redacted]/" in entry.exc_text
    assert entry.exc_info is None  # no formatter can print the original again


def test_a_traceback_without_a_secret_keeps_its_exception():
    exc_info = raised(ValueError("boom"))
    entry = record("Error handling request", exc_info=exc_info)

    RedactSecrets().filter(entry)

    assert entry.exc_info == exc_info


def test_a_malformed_logging_call_with_a_token_raises_nothing_and_shows_no_token():
    entry = record("%s %s", f"/downloads/{RAW}/")  # one argument for two places

    assert RedactSecrets().filter(entry) is True
    assert RAW not in entry.getMessage()


@pytest.fixture
def console():
    """What the console handler of settings.LOGGING writes, for the test."""
    [handler] = [handler for handler in logging.getLogger().handlers if handler.name == "console"]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.mark.parametrize(
    ("logger", "level", "msg", "args"),
    [
        ("django.server", logging.INFO, '"%s" %s %s', (f"GET /downloads/{RAW}/ HTTP/1.1", 200, 9)),
        (
            "django.server",
            logging.WARNING,
            '"%s" %s %s',
            (f"POST /downloads/{RAW} HTTP/1.1", 404, 0),
        ),
        ("django.request", logging.ERROR, "Internal Server Error: %s", (f"/downloads/{RAW}/",)),
        ("django.request", logging.WARNING, "Not Found: %s", (f"/downloads/{RAW}/).",)),
    ],
)
def test_djangos_request_lines_reach_the_console_with_the_token_redacted(
    console, logger, level, msg, args
):
    logging.getLogger(logger).log(level, msg, *args)

    assert RAW not in console.getvalue()
    assert "/downloads/[redacted]" in console.getvalue()
