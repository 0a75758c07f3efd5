"""The audit archive (audit/archive.py, audit/archive_format.py): an ended, sealed month written
as signed gzipped JSON lines, read back and recorded; verified offline from the files and the
public key alone; every change to the files found; and the same in an S3-compatible bucket with
Object Lock (moto's server on loopback)."""

import datetime
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone

from audit import archive, archive_format, services
from audit import tasks as audit_tasks
from audit.models import Archive, AuditLog
from audit.tests.factories import AuditLogFactory, request_context
from audit.tests.helpers import (
    db_value,
    entries_in,
    last_entry_id,
    months_ago,
    only_entry,
    run_sql,
    seal_all,
    triggers_lifted,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(settings) -> Path:
    """The archive storage: a folder of the test's own (conftest.py)."""
    return Path(settings.STORAGES["audit_archive"]["OPTIONS"]["location"])


@pytest.fixture
def public_key() -> str:
    return archive_format.public_key_text(archive.signing_key())


def verify(root: Path, public_key: str) -> archive_format.Report:
    return archive_format.verify_archive(
        archive_format.Folder(root), archive_format.public_key(public_key)
    )


def test_a_sealed_month_is_written_read_back_and_recorded(folder, public_key):
    month = months_ago(2)
    ids = entries_in(month, 5)
    seal_all()
    mark = last_entry_id()

    done = archive.archive_month(month)

    assert (done.month, done.first_id, done.last_id, done.row_count) == (month, ids[0], ids[-1], 5)
    manifest = json.loads((folder / done.manifest).read_bytes())
    assert manifest["previous_manifest"] == "0" * 64
    assert manifest["public_key"] == public_key
    assert [f["name"] for f in manifest["files"]] == ["entries-0000.jsonl.gz"]
    lines = gzip.decompress((folder / f"{month:%Y-%m}/entries-0000.jsonl.gz").read_bytes())
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [row["id"] for row in rows] == ids
    assert rows[0]["digest"] == AuditLog.objects.get(id=ids[0]).digest
    entry = only_entry(mark, "audit.archived")
    assert entry.metadata == {
        "month": f"{month:%Y-%m}",
        "rows": 5,
        "manifest_sha256": done.manifest_sha256,
    }
    report = verify(folder, public_key)
    assert report.ok, report.problems
    assert (report.months, report.rows, report.checkpoints) == (1, 5, 1)
    archive.verify_stored(done)


def test_each_line_holds_the_entry_as_stored_with_its_time_as_the_checkpoints_hash_it(
    folder, public_key
):
    """The lines are made by the database and a format string, not by a JSON encoder: every
    column, in the archive's order, as stored (nulls, quotes, control characters, non-ASCII
    text, nested metadata), and the time as Python's isoformat() writes it, with or without
    its microseconds."""
    month = months_ago(2)
    mark = last_entry_id()
    odd = request_context(ip_address=None, user_agent='agent "quoted" \\ tab\t ünï €')
    services.log(
        "invoice.updated",
        target=("invoice", 7),
        metadata={"z": [1, None, "é\n"], "a": {"nested": True}},
        context=odd,
    )
    AuditLogFactory(metadata={"amount": "12.50"})
    AuditLogFactory()
    ids = list(AuditLog.objects.filter(id__gt=mark).order_by("id").values_list("id", flat=True))
    base = datetime.datetime(month.year, month.month, 10, 12, tzinfo=datetime.UTC)
    # The third as the database's own default writes a time: SQLite's text has milliseconds.
    own = f"{base:%Y-%m-%d %H:%M:%S}.500" if connection.vendor == "sqlite" else base
    times = (db_value(base), db_value(base.replace(microsecond=120)), own)
    with triggers_lifted():
        for entry_id, moment in zip(ids, times, strict=True):
            run_sql(
                "UPDATE audit_auditlog SET created_at = %s WHERE id = %s",
                params=[moment, entry_id],
            )
    seal_all()

    done = archive.archive_month(month)

    lines = gzip.decompress((folder / f"{month:%Y-%m}/entries-0000.jsonl.gz").read_bytes())
    stored = AuditLog.objects.order_by("id").values(*archive_format.COLUMNS)
    expected = [
        {**row, "created_at": row["created_at"].astimezone(datetime.UTC).isoformat()}
        for row in stored.filter(id__in=ids)
    ]
    rows = [json.loads(line) for line in lines.splitlines()]
    assert rows == expected
    order = [*archive_format.COLUMNS[:2], *archive.COLUMNS_BUT_METADATA, "metadata", "digest"]
    assert all(list(row) == order for row in rows)
    day = f"{month:%Y-%m}-10T12:00:00"
    assert [row["created_at"] for row in rows] == [
        f"{day}+00:00",
        f"{day}.000120+00:00",
        f"{day}.500000+00:00" if connection.vendor == "sqlite" else f"{day}+00:00",
    ]
    assert done.row_count == 3 and verify(folder, public_key).ok


def test_months_chain_and_a_checkpoint_over_two_months_is_recomputed_from_both(
    folder, public_key, monkeypatch
):
    first, second = months_ago(3), months_ago(2)
    entries_in(first, 3)
    seal_all()
    entries_in(first, 2, day=28)
    entries_in(second, 2)  # sealed with the two above, in one checkpoint over both months,
    with monkeypatch.context() as before:  # as before the seal cut ranges at months
        before.setattr(services, "_one_month", lambda rows: rows)
        seal_all()

    one = archive.archive_month(first)
    alone = verify(folder, public_key)
    two = archive.archive_month(second)

    manifest = json.loads((folder / two.manifest).read_bytes())
    assert manifest["previous_manifest"] == one.manifest_sha256
    assert alone.ok and alone.checkpoints == 1
    assert any("outside the months given" in note for note in alone.notes)
    both = verify(folder, public_key)
    assert both.ok, both.problems
    assert (both.rows, both.checkpoints, both.notes) == (7, 2, [])


def test_the_command_archives_every_ended_month_in_order_and_the_beat_task_too(folder):
    entries_in(months_ago(4), 2)
    entries_in(months_ago(2), 2)
    AuditLogFactory()  # this month: not ended
    seal_all()
    out = io.StringIO()

    call_command("archive_audit_log", stdout=out)

    assert list(Archive.objects.values_list("month", flat=True)) == [months_ago(4), months_ago(2)]
    assert "archived 2 month(s)" in out.getvalue()
    entries_in(months_ago(1), 1)
    seal_all()
    assert audit_tasks.archive_audit_log.delay().get() == 1
    assert audit_tasks.archive_audit_log.delay().get() == 0


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        ("this month", "has not ended"),
        ("not sealed", "not sealed yet"),
        ("an earlier month waits", "are not archived yet"),
    ],
)
def test_a_month_that_cannot_be_archived_yet_is_refused(folder, arrange, message):
    month = timezone.now().date().replace(day=1) if arrange == "this month" else months_ago(2)
    if arrange == "an earlier month waits":
        entries_in(months_ago(3), 1)
    entries_in(month, 1)
    if arrange != "not sealed":
        seal_all()

    with pytest.raises(archive.ArchiveError, match=message):
        archive.archive_month(month)
    with pytest.raises(CommandError, match=message):
        call_command("archive_audit_log", "--month", f"{month:%Y-%m}")
    assert not Archive.objects.exists()


def test_an_interrupted_run_goes_on_with_the_files_it_left(folder, monkeypatch, public_key):
    month = months_ago(2)
    entries_in(month, 3)
    seal_all()
    check = archive._check_signature
    monkeypatch.setattr(archive, "_check_signature", lambda *a: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        archive.archive_month(month)
    assert (folder / f"{month:%Y-%m}/manifest.json").exists()
    monkeypatch.setattr(archive, "_check_signature", check)
    AuditLogFactory()  # the chain grows meanwhile: the manifest does not change for it
    seal_all()

    done = archive.archive_month(month)

    assert done.row_count == 3
    assert sorted(p.name for p in (folder / f"{month:%Y-%m}").iterdir()) == [
        "checkpoints.jsonl.gz",
        "entries-0000.jsonl.gz",
        "manifest.json",
    ]
    assert verify(folder, public_key).ok


def test_a_file_left_with_other_content_is_refused(folder):
    month = months_ago(2)
    entries_in(month, 2)
    seal_all()
    (folder / f"{month:%Y-%m}").mkdir(parents=True)
    (folder / f"{month:%Y-%m}/entries-0000.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))

    with pytest.raises(archive.ArchiveError, match="already in the archive with other content"):
        archive.archive_month(month)
    assert not Archive.objects.exists()


@pytest.mark.parametrize("name", ["entries-0000.jsonl.gz", "manifest.json"])
def test_a_file_an_interrupted_run_left_cut_short_is_written_again(folder, public_key, name):
    month = months_ago(2)
    entries_in(month, 2)
    seal_all()
    archive.archive_month(month)
    path = folder / f"{month:%Y-%m}" / name
    whole = path.read_bytes()
    with triggers_lifted():  # as if the run had stopped mid-write, before recording it
        Archive.objects.all().delete()
    path.write_bytes(whole[: len(whole) // 2])

    done = archive.archive_month(month)

    assert path.read_bytes() == whole
    assert done.month == month and verify(folder, public_key).ok


def test_a_month_is_split_into_files_of_the_configured_size(folder, settings, public_key):
    settings.AUDIT_ARCHIVE_ROWS_PER_FILE = 2
    month = months_ago(2)
    entries_in(month, 5)
    seal_all()

    done = archive.archive_month(month)

    manifest = json.loads((folder / done.manifest).read_bytes())
    assert [f["rows"] for f in manifest["files"]] == [2, 2, 1]
    assert verify(folder, public_key).ok


@pytest.fixture
def three_months(folder):
    months = [months_ago(4), months_ago(3), months_ago(2)]
    for month in months:
        entries_in(month, 3)
    seal_all()
    for month in months:
        archive.archive_month(month)
    return [f"{month:%Y-%m}" for month in months]


def flip_a_byte(path: Path, at: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        (lambda root, m: flip_a_byte(root / m[1] / "entries-0000.jsonl.gz"), "entries-0000"),
        (lambda root, m: flip_a_byte(root / m[1] / "checkpoints.jsonl.gz", 12), "checkpoints"),
        (lambda root, m: flip_a_byte(root / m[1] / "manifest.json", 40), "signature"),
        (lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").unlink(), "missing"),
        (lambda root, m: (root / m[1] / "notes.txt").write_text("x"), "extra file"),
        (lambda root, m: shutil.rmtree(root / m[1]), "chain is broken"),
        (
            lambda root, m: shutil.copy(
                root / m[0] / "entries-0000.jsonl.gz", root / m[1] / "entries-0000.jsonl.gz"
            ),
            "changed",
        ),
    ],
    ids=[
        "a byte of entries",
        "a byte of the checkpoints",
        "a byte of a manifest",
        "a missing file",
        "an extra file",
        "a missing month",
        "another month's file",
    ],
)
def test_offline_verification_finds_each_change(three_months, folder, public_key, tamper, found):
    assert verify(folder, public_key).ok
    tamper(folder, three_months)

    report = verify(folder, public_key)

    assert not report.ok
    assert any(found in problem for problem in report.problems), report.problems
    with pytest.raises(CommandError, match="FAILED"):
        call_command(
            "verify_audit_archive", folder, "--public-key", public_key, stderr=io.StringIO()
        )


def gzip_lines(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def resign(root: Path, folder: str, **changes) -> None:
    """A manifest changed and signed again with the archive's own key (as by its holder)."""
    path = root / folder / "manifest.json"
    manifest = json.loads(path.read_bytes())
    manifest.pop("signature")
    path.write_bytes(archive_format.signed_manifest({**manifest, **changes}, archive.signing_key()))


@pytest.mark.parametrize(
    "malformed",
    [
        lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").write_bytes(
            (root / m[1] / "entries-0000.jsonl.gz").read_bytes()[:-9]
        ),
        lambda root, m: (root / m[1] / "checkpoints.jsonl.gz").write_bytes(gzip_lines(b"{}")),
        lambda root, m: (root / m[1] / "checkpoints.jsonl.gz").write_bytes(
            gzip_lines(b'{"first_id": "1", "last_id": [], "row_count": 1}')
        ),
        lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").write_bytes(gzip_lines(b"[1,2]")),
        lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").write_bytes(
            gzip_lines(b'{"id": "x", "created_at": 5, "digest": null}', b"[" * 100_000)
        ),
        lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").write_bytes(b"not gzip"),
        lambda root, m: (root / m[1] / "entries-0000.jsonl.gz").write_bytes(
            gzip.compress(b"x" * (20 << 20))
        ),
        lambda root, m: (root / m[1] / "manifest.json").write_bytes(b"[" * 100_000),
        lambda root, m: resign(root, m[1], files=5),
        lambda root, m: resign(root, m[1], files=[{"name": "../../etc/passwd", "sha256": "0"}]),
        lambda root, m: resign(root, m[1], **{"from": "yesterday"}),
        lambda root, m: resign(root, m[1], month=m[0]),
        lambda root, m: resign(root, m[1], row_count=True),
    ],
    ids=[
        "truncated gzip", "checkpoint line {}", "checkpoint of wrong types", "entry a list",
        "entry of wrong types", "not gzip", "a line of 20 MB", "deeply nested manifest",
        "files not a list", "a file outside its month", "bounds not times",
        "another month's manifest", "a count that is a boolean",
    ],
)  # fmt: skip
def test_a_malformed_archive_is_reported_not_a_crash(three_months, folder, public_key, malformed):
    malformed(folder, three_months)

    report = verify(folder, public_key)

    assert not report.ok


def test_an_archive_signed_by_another_key_does_not_verify(three_months, folder):
    other = archive_format.public_key_text(archive_format.private_key("A" * 43 + "="))

    report = verify(folder, other)

    assert [p for p in report.problems if "signature" in p] and report.months == 0


def test_a_record_whose_stored_archive_changed_does_not_verify(three_months, folder):
    flip_a_byte(folder / three_months[0] / "entries-0000.jsonl.gz")

    with pytest.raises(archive.ArchiveError, match="does not verify"):
        archive.verify_stored(Archive.objects.get(month=months_ago(4)))


def test_the_command_verifies_with_no_database_and_no_hmac_key(three_months, folder, public_key):
    """Run as an auditor would: a process whose database does not answer and whose HMAC key is
    not the trail's."""
    environment = {
        **os.environ,
        "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
        "AUDIT_HMAC_KEY": "not-the-key",
        "AUDIT_ARCHIVE_SIGNING_KEY": "",
    }
    command = [sys.executable, "manage.py", "verify_audit_archive", str(folder)]

    good = subprocess.run(
        [*command, "--public-key", public_key],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip
    flip_a_byte(folder / three_months[2] / "entries-0000.jsonl.gz")
    bad = subprocess.run(
        [*command, "--public-key", public_key],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip

    assert good.returncode == 0, good.stderr
    assert "audit archive OK: 3 month(s), 9 entries, 3 checkpoint(s) recomputed" in good.stdout
    newest = Archive.objects.order_by("-month").first()
    assert f"newest month {three_months[2]}, manifest SHA-256 {newest.manifest_sha256}" in (
        good.stdout
    )
    assert bad.returncode == 1
    assert "entries-0000.jsonl.gz" in bad.stderr and "FAILED" in bad.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--public-key", "not base64!"], "--public-key"), (["--public-key", "AAAA"], "--public-key")],
)
def test_the_command_names_a_bad_argument(folder, arguments, message):
    folder.mkdir()
    with pytest.raises(CommandError, match=message):
        call_command("verify_audit_archive", folder, *arguments)


def test_the_key_command_prints_the_public_key_and_makes_new_keys(public_key):
    printed, made = io.StringIO(), io.StringIO()

    call_command("audit_archive_key", stdout=printed)
    call_command("audit_archive_key", "--new", stdout=made)

    assert printed.getvalue().strip() == public_key
    seed_line, public_line = made.getvalue().splitlines()
    seed = seed_line.removeprefix("AUDIT_ARCHIVE_SIGNING_KEY=")
    assert (
        public_line
        == f"public key: {archive_format.public_key_text(archive_format.private_key(seed))}"
    )


# An S3-compatible bucket with Object Lock ---------------------------------------------------


@pytest.fixture
def bucket(settings, monkeypatch):
    """moto's S3 server on loopback, a bucket with Object Lock (GOVERNANCE by default), and the
    archive storage pointed at it."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="audit", ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket="audit",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "audit.archive_storage.ArchiveS3Storage",
            "OPTIONS": {
                "bucket_name": "audit",
                "location": "trail",
                "endpoint_url": endpoint,
                "region_name": "us-east-1",
                "file_overwrite": False,
            },
        },
    }
    yield client
    server.stop()


def test_an_archive_in_an_s3_bucket_is_locked_and_verifies_offline(
    bucket, settings, tmp_path, public_key
):
    settings.AUDIT_ARCHIVE_LOCK_DAYS = 30
    month = months_ago(2)
    entries_in(month, 4)
    seal_all()

    done = archive.archive_month(month)
    archive.verify_stored(done)

    keys = sorted(o["Key"] for o in bucket.list_objects_v2(Bucket="audit")["Contents"])
    folder = f"trail/{month:%Y-%m}"
    assert keys == [
        f"{folder}/{n}" for n in ("checkpoints.jsonl.gz", "entries-0000.jsonl.gz", "manifest.json")
    ]
    head = bucket.head_object(Bucket="audit", Key=f"{folder}/manifest.json")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + datetime.timedelta(days=29)
    version = head["VersionId"]
    with pytest.raises(bucket.exceptions.ClientError, match="AccessDenied"):
        bucket.delete_object(Bucket="audit", Key=f"{folder}/manifest.json", VersionId=version)
    for key in keys:  # what an auditor downloads
        target = tmp_path / "copy" / key.removeprefix("trail/")
        target.parent.mkdir(parents=True, exist_ok=True)
        bucket.download_file("audit", key, str(target))
    report = verify(tmp_path / "copy", public_key)
    assert report.ok, report.problems
    assert report.rows == 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer")
def test_one_run_archives_at_a_time(folder):
    entries_in(months_ago(2), 1)
    seal_all()
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [archive.LOCK_KEY])
    try:
        with pytest.raises(archive.NotReady, match="another run"):
            archive.archive_month(months_ago(2))
        assert archive.archive_ended_months() == []
    finally:
        other.close()

    assert len(archive.archive_ended_months()) == 1


def test_fetches_files_and_checkpoints_cut_across_each_other(
    folder, settings, monkeypatch, public_key
):
    """Rows are fetched two at a time, written three to a file, and sealed two to a
    checkpoint: every cut falls somewhere else, and each checkpoint is still checked whole."""
    monkeypatch.setattr(archive, "FETCH", 2)
    settings.AUDIT_ARCHIVE_ROWS_PER_FILE = 3
    month = months_ago(2)
    ids = entries_in(month, 7)
    while services.seal_audit_log(max_rows=2):
        pass

    done = archive.archive_month(month)

    manifest = json.loads((folder / done.manifest).read_bytes())
    assert [(f["rows"], f["first_id"], f["last_id"]) for f in manifest["files"]] == [
        (3, ids[0], ids[2]),
        (3, ids[3], ids[5]),
        (1, ids[6], ids[6]),
    ]
    keys = {"name", "bytes", "sha256", "rows", "first_id", "last_id"}
    assert all(set(file) == keys for file in manifest["files"])
    report = verify(folder, public_key)
    assert report.ok and (report.rows, report.checkpoints) == (7, 4)


def test_a_storage_failing_mid_month_leaves_nothing_recorded_and_a_run_again_archives(
    folder, settings, monkeypatch, public_key
):
    monkeypatch.setattr(archive, "FETCH", 2)
    settings.AUDIT_ARCHIVE_ROWS_PER_FILE = 2
    month = months_ago(2)
    entries_in(month, 5)
    seal_all()
    put = archive._put

    def failing(store, name, spool):
        if name.endswith("entries-0001.jsonl.gz"):
            raise OSError("the storage is gone")
        return put(store, name, spool)

    monkeypatch.setattr(archive, "_put", failing)
    with pytest.raises(OSError, match="the storage is gone"):
        archive.archive_month(month)
    assert not Archive.objects.exists()
    monkeypatch.setattr(archive, "_put", put)

    done = archive.archive_month(month)

    assert done.row_count == 5 and verify(folder, public_key).ok


def test_a_file_size_below_one_row_is_refused(settings):
    settings.AUDIT_ARCHIVE_ROWS_PER_FILE = 0

    with pytest.raises(archive.ArchiveError, match="at least 1"):
        archive.archive_month(months_ago(2))


def test_entries_that_are_not_those_sealed_are_not_archived(folder):
    month = months_ago(2)
    ids = entries_in(month, 3)
    seal_all()
    with triggers_lifted():  # a sealed row changed since
        run_sql("UPDATE audit_auditlog SET digest = %s WHERE id = %s", params=["0" * 64, ids[1]])

    with pytest.raises(archive.ArchiveError, match="not those sealed"):
        archive.archive_month(month)

    assert not Archive.objects.exists()
