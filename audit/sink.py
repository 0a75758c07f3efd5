"""Copies of every checkpoint outside the database, made as soon as the checkpoint commits.

The log always gets one line. AUDIT_CHECKPOINT_SINK adds a copy of one's own choosing: a file
path (one JSON line per checkpoint, appended and synced to disk; point it at storage the
application cannot rewrite, such as an append-only mount or a log shipper's spool) or an
http(s):// URL that receives each checkpoint as a JSON POST within AUDIT_CHECKPOINT_SINK_TIMEOUT.
Whoever deletes the newest entries together with their checkpoint cannot also delete these
copies: `verify_audit_log --checkpoints FILE` finds every copy missing from the database.
"""

import json
import logging
import os
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

FIELDS = ("first_id", "last_id", "row_count", "rows_hash", "previous_digest", "digest")


def record_of(checkpoint) -> dict:
    return {field: getattr(checkpoint, field) for field in FIELDS}


def publish(checkpoint) -> None:
    record = record_of(checkpoint)
    logger.info("audit checkpoint %s", json.dumps(record, sort_keys=True))
    target = settings.AUDIT_CHECKPOINT_SINK
    if not target:
        return
    try:
        if target.startswith(("https://", "http://")):
            _post(target, record)
        else:
            _append(Path(target), record)
    except (OSError, ValueError, HTTPException) as error:  # the log line is then the only copy
        logger.error(
            "audit checkpoint %s..%s not copied to AUDIT_CHECKPOINT_SINK: %s",
            record["first_id"], record["last_id"], type(error).__name__,
        )  # fmt: skip


def _append(path: Path, record: dict) -> None:
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _post(url: str, record: dict) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("a checkpoint sink beyond this machine must be https://")
    request = urllib.request.Request(  # noqa: S310 (the operator's own URL, http(s) only)
        url,
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=settings.AUDIT_CHECKPOINT_SINK_TIMEOUT):  # noqa: S310
        pass  # urlopen raises on an answer other than 2xx


def read_copies(path: Path) -> list[dict]:
    """The checkpoints a sink file holds, oldest first; ValueError for a line that is not one."""
    copies = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        copy = json.loads(line)
        if not isinstance(copy, dict) or not all(
            isinstance(copy.get(field), int | str) for field in FIELDS
        ):
            raise ValueError(f"line {number} is not a checkpoint")
        copies.append(copy)
    return copies
