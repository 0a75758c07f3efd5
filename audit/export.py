"""Streaming exports of the audit trail: CSV and JSON Lines, in constant memory."""

import csv
import itertools
import json

from django.core.serializers.json import DjangoJSONEncoder

from audit import subjects
from audit.integrity import DIGEST_FIELDS

# What an entry reads (audit/subjects.py): its sealed text and search hashes stay in the trail.
FIELDS = (
    "id",
    "created_at",
    *(field for field in DIGEST_FIELDS if field not in subjects.STORED_ONLY),
)
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like sink for csv.writer that hands back each row it is given."""

    def write(self, value):
        return value


def _cell(value) -> str:
    if isinstance(value, dict):
        value = json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def stream(queryset, file_format: str, *, chunk_size: int = 2000):
    """Yield the export line by line; rows are read with a server-side cursor on PostgreSQL, and
    revealed a chunk at a time."""
    rows = (
        [getattr(entry, field) for field in FIELDS]
        for chunk in _chunks(queryset.order_by("id").iterator(chunk_size=chunk_size), chunk_size)
        for entry in chunk
    )
    if file_format == "csv":
        writer = csv.writer(_Line())
        yield writer.writerow(FIELDS)
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])
    else:
        for row in rows:
            yield json.dumps(dict(zip(FIELDS, row, strict=True)), cls=DjangoJSONEncoder) + "\n"


def _chunks(entries, size: int):
    """The entries by `size`, revealed (audit/subjects.py)."""
    while chunk := list(itertools.islice(entries, size)):
        subjects.reveal(chunk)
        yield chunk
