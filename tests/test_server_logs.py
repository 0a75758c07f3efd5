"""No server log line holds a download token: gunicorn with the repository's gunicorn.conf.py and
Django's development server (`make run`), each a real process on loopback serving a real link,
asked for it in the ways that reach a log: the landing page with a Referer, the download, a
hand-encoded path, the token in the query, punctuation stuck to the link, a malformed request
line, and a request that fails inside Django."""

import json
import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from emails.tests.helpers import free_port, wait_until

BASE_DIR = Path(settings.BASE_DIR)
# Every atom of gunicorn's access log that can carry the URL, beside the usual ones.
ACCESS_LOG_FORMAT = (
    '%(h)s "%(r)s" %(s)s "%(f)s" %(U)s %(q)s %({raw_uri}e)s %({path_info}e)s '
    "%({query_string}e)s %({referer}i)s %({location}o)s"
)


# Run once in the site's own database: its tables, then one invoice link, printed.
SETUP = (
    "from django.core.management import call_command; "
    "from downloads.tests.helpers import invoice_link; "
    "call_command('migrate', verbosity=0); "
    "print('RAW=' + invoice_link()[2])"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Production settings on a SQLite file of the site's own (the servers run apart from the
    test database), holding one invoice link: (environment, database, raw token)."""
    database = tmp_path_factory.mktemp("site") / "site.sqlite3"
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "false",
        "SECRET_KEY": "server-logs-test-" + "k" * 50,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"sqlite:///{database}",
    }
    setup = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    made = re.search(r"RAW=([A-Za-z0-9_-]{43})", setup.stdout)
    assert made, setup.stdout + setup.stderr
    return env, database, made.group(1)


@contextmanager
def serving(command: list[str], env: dict, output: Path, port: int):
    """The server as a process of its own until the block ends; stopped (and its logs flushed)
    before the test reads them."""
    with output.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        up = wait_until(lambda: answers(port) or process.poll() is not None, timeout=30)
        assert up and process.poll() is None, output.read_text(errors="replace")
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)  # both stop at once on SIGTERM: a hang is a failure to see


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def ask(port: int, request_line: str, *headers: str) -> str:
    """Send the request byte for byte (no client library tidies it) and return the status
    line of the answer."""
    lines = [request_line, "Host: 127.0.0.1", "Connection: close", *headers]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def ask_for_the_link_every_way(port: int, raw: str) -> list[str]:
    link = f"/downloads/{raw}/"
    return [
        ask(port, f"GET {link} HTTP/1.1", f"Referer: http://127.0.0.1{link}"),
        ask(port, f"POST {link} HTTP/1.1", "Content-Length: 0"),
        ask(port, f"GET /%64ownloads%2F{raw}/ HTTP/1.1"),
        ask(port, f"GET /downloads/{raw}?token={raw} HTTP/1.1"),
        ask(port, f"GET {link}). HTTP/1.1"),
        ask(port, f"GET {link}"),  # no HTTP version: a malformed request line
    ]


def gunicorn(port: int, access_log: Path, error_log: Path, *options: str) -> list[str]:
    """One gunicorn worker with the repository's gunicorn.conf.py, its two logs in files and
    Django's output captured into the error log."""
    # fmt: off
    return [
        sys.executable, "-m", "gunicorn", "invoicegen.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--no-control-socket", "--capture-output",
        "--access-logfile", str(access_log), "--error-logfile", str(error_log), *options,
    ]
    # fmt: on


def test_gunicorn_logs_every_request_for_a_link_without_its_token(site, tmp_path):
    env, database, raw = site
    port = free_port()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    command = gunicorn(
        port, access_log, error_log, "--log-level", "debug", "--access-logformat", ACCESS_LOG_FORMAT
    )
    with serving(command, env, tmp_path / "output.log", port):
        statuses = ask_for_the_link_every_way(port, raw)
        database.rename(database.with_suffix(".away"))  # the next request fails inside Django
        try:
            failed = ask(port, f"GET /downloads/{raw}/ HTTP/1.1")
        finally:
            database.with_suffix(".away").rename(database)

    assert [status.split(" ")[1] for status in statuses] == ["200"] * 4 + ["404", "400"]
    assert failed.split(" ")[1] in ("500", "503")
    access_lines = access_log.read_text().splitlines()
    errors = error_log.read_text()
    assert raw not in access_log.read_text() + errors
    assert len(access_lines) == 6  # the malformed request never reached the access log
    assert all(line.count("[redacted]") >= 4 for line in access_lines), access_lines
    assert "Invalid HTTP request line: 'GET /downloads/[redacted]/'" in errors
    assert re.search(
        r"(Internal Server Error|Service Unavailable): /downloads/\[redacted\]/", errors
    )


def test_djangos_development_server_logs_requests_for_a_link_without_its_token(site, tmp_path):
    env, _, raw = site
    port = free_port()
    output = tmp_path / "runserver.log"
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(command, {**env, "DEBUG": "true"}, output, port):
        statuses = ask_for_the_link_every_way(port, raw)

    assert [status.split(" ")[1] for status in statuses[:5]] == ["200"] * 4 + ["404"]
    logged = output.read_text()
    assert raw not in logged
    # runserver is daphne's (settings.INSTALLED_APPS): its request lines.
    assert "HTTP GET /downloads/[redacted]/ 200" in logged
    assert "HTTP POST /downloads/[redacted]/ 200" in logged


# LOG_FORMAT=json


def json_lines(text: str) -> list[dict]:
    """Every line of a log, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_gunicorn_writes_json_lines_with_the_request_id_each_once(site, tmp_path):
    env, _, raw = site
    port = free_port()
    access_log, error_log = tmp_path / "access.log", tmp_path / "error.log"
    command = gunicorn(port, access_log, error_log)
    with serving(command, {**env, "LOG_FORMAT": "json"}, tmp_path / "output.log", port):
        ask(port, f"GET /downloads/{raw}/ HTTP/1.1", "X-Request-ID: req-landing-1")
        ask(port, "GET /api/no-such-thing/ HTTP/1.1", "X-Request-ID: req-missing-2")

    access = json_lines(access_log.read_text())
    assert [line["request_id"] for line in access] == ["req-landing-1", "req-missing-2"]
    assert all(line["logger"] == "gunicorn.access" for line in access)
    assert "/downloads/[redacted]/" in access[0]["message"]
    errors = json_lines(error_log.read_text())
    assert {line["level"] for line in errors} <= {"INFO", "WARNING"}
    logged = access_log.read_text() + error_log.read_text()
    assert raw not in logged
    not_found = [line for line in errors if "Not Found: /api/no-such-thing/" in line["message"]]
    assert [line.get("request_id") for line in not_found] == ["req-missing-2"]  # once, with its id


def test_djangos_development_server_writes_json_lines_each_once(site, tmp_path):
    env, _, raw = site
    port = free_port()
    output = tmp_path / "runserver.log"
    command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with serving(command, {**env, "DEBUG": "true", "LOG_FORMAT": "json"}, output, port):
        ask(port, f"GET /downloads/{raw}/ HTTP/1.1")

    # The banner ("Starting development server at ...") is the command's own text, not a log
    # line; every log line is JSON.
    text = output.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [line for line in text.splitlines() if "/downloads/" in line and line[0] != "{"]
    requests = [line for line in lines if "GET /downloads/[redacted]/" in line["message"]]
    assert len(requests) == 1
    assert requests[0]["logger"] == "django.channels.server"  # daphne's runserver
    assert raw not in text
