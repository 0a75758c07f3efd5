"""Checkpoints leave the database as they commit (the log, a file or an HTTP receiver), and the
copies find what the database alone cannot: the newest entries deleted with their checkpoint."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command

from audit import services
from audit.models import AuditLog, Checkpoint
from audit.sink import read_copies, record_of
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import run_sql, triggers_lifted

pytestmark = pytest.mark.django_db


@pytest.fixture
def seal(django_capture_on_commit_callbacks):
    """Seal new entries and commit, as the beat's task does (the copies are made on commit)."""

    def run() -> Checkpoint:
        AuditLogFactory.create_batch(2)
        with django_capture_on_commit_callbacks(execute=True):
            return services.seal_audit_log()

    return run


@pytest.fixture
def receiver():
    """An HTTP server on loopback that records what is posted to it (a log collector)."""
    received, answer = [], {"status": 204}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(answer["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/checkpoints"
    server.received, server.answer = received, answer
    yield server
    server.shutdown()
    server.server_close()


def test_each_checkpoint_goes_to_the_log_once_committed(seal, caplog):
    checkpoint = seal()

    assert f'"digest": "{checkpoint.digest}"' in caplog.text
    assert f'"last_id": {checkpoint.last_id}' in caplog.text


def test_each_checkpoint_is_appended_to_the_sink_file(seal, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_SINK = str(tmp_path / "checkpoints.jsonl")

    checkpoints = [seal(), seal()]

    assert read_copies(tmp_path / "checkpoints.jsonl") == [record_of(c) for c in checkpoints]


def test_each_checkpoint_is_posted_to_the_sink_url(seal, settings, receiver):
    settings.AUDIT_CHECKPOINT_SINK = receiver.url

    checkpoint = seal()

    assert receiver.received == [("application/json", record_of(checkpoint))]


@pytest.mark.parametrize(
    "broken", ["refused", "error answer", "unwritable file", "plain http to another host"]
)
def test_a_failing_sink_keeps_the_checkpoint_and_says_so_in_the_log(
    seal, settings, receiver, tmp_path, caplog, broken
):
    settings.AUDIT_CHECKPOINT_SINK = {
        "refused": "http://127.0.0.1:9/checkpoints",  # the discard port: nothing listens
        "error answer": receiver.url,
        "unwritable file": str(tmp_path / "no-such-folder" / "checkpoints.jsonl"),
        "plain http to another host": "http://collector.invalid/checkpoints",
    }[broken]
    receiver.answer["status"] = 500

    checkpoint = seal()

    assert Checkpoint.objects.filter(pk=checkpoint.pk).exists()
    assert f"audit checkpoint {checkpoint.first_id}..{checkpoint.last_id} not copied" in (
        caplog.text
    )
    assert not any(part in caplog.text for part in ("127.0.0.1:9", "no-such-folder", "invalid"))


def test_newest_entries_deleted_with_their_checkpoint_are_found_by_the_copies(
    seal, settings, tmp_path
):
    """Deleting the last checkpoint with its rows leaves a chain that verifies on its own;
    only a copy kept outside the database shows that something is gone."""
    copies = tmp_path / "checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_SINK = str(copies)
    seal()
    newest = seal()
    with triggers_lifted():  # a database superuser covering their tracks
        run_sql("DELETE FROM audit_auditlog WHERE id >= %s", params=[newest.first_id])
        run_sql("DELETE FROM audit_checkpoint WHERE id = %s", params=[newest.pk])

    call_command("verify_audit_log")  # the database alone: nothing to see

    with pytest.raises(CommandError, match=f"first bad id {newest.first_id}"):
        call_command("verify_audit_log", "--checkpoints", str(copies))
    assert AuditLog.objects.filter(action="audit.tamper_detected").count() == 1


def test_verify_against_intact_copies_passes_and_says_how_many(seal, settings, tmp_path, capsys):
    copies = tmp_path / "checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_SINK = str(copies)
    seal()
    seal()

    call_command("verify_audit_log", "--checkpoints", str(copies))

    assert "2 checkpoint copies" in capsys.readouterr().out


@pytest.mark.parametrize("line", ["not json", "[1, 2]", '{"first_id": 1}'])
def test_verify_with_an_unreadable_copy_file_is_a_clear_error(tmp_path, line):
    (tmp_path / "bad.jsonl").write_text(f"{line}\n")

    with pytest.raises(CommandError, match="cannot read"):
        call_command("verify_audit_log", "--checkpoints", str(tmp_path / "bad.jsonl"))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("verify_audit_log", "--checkpoints", str(tmp_path / "missing.jsonl"))
