"""Entries written in one statement keep each their own values: a value that all entries seem
to share is sent once, so "seem" must mean "read back the same", not Python's `==`."""

import json

import pytest
from django.db import connection

from audit import services, subjects
from audit.models import AuditLog
from audit.tests.factories import request_context
from audit.verification import verify_audit_log

pytestmark = pytest.mark.django_db


def written_together(*metadatas, **context) -> list[AuditLog]:
    entries = [
        services.entry_values(
            "invoice.updated",
            target=("invoice", 1),
            metadata=metadata,
            context=request_context(**context),
        )
        for metadata in metadatas
    ]
    mark = AuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    services.insert_entries(entries)
    return list(AuditLog.objects.filter(id__gt=mark).order_by("id"))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"paid": 1}, {"paid": True}),
        ({"paid": 0}, {"paid": False}),
        ({"amount": 1}, {"amount": 1.0}),
        ({"changes": {"n": [0, 1]}}, {"changes": {"n": [False, True]}}),
    ],
)
def test_values_equal_in_python_but_not_in_json_are_kept_apart(first, second):
    entries = written_together(first, second)

    # Compared as JSON: 1 == True == 1.0 in Python, but not in the column or the digest.
    assert [json.dumps(entry.metadata) for entry in entries] == [
        json.dumps(first),
        json.dumps(second),
    ]
    assert verify_audit_log().ok


@pytest.mark.parametrize("shared", [True, False], ids=["all equal", "each its own"])
def test_every_column_reads_back_as_written(shared):
    texts = ['quote " backslash \\ slash / tab-free', "unicode é ß 日本 😀 \u00a0"]
    metadata = [{"text": texts[0], "none": None, "list": [1, "2", None], "obj": {}}]
    metadata.append(metadata[0] if shared else {"text": texts[1], "arr": [], "f": 1.5})
    entries = [
        services.entry_values(
            "invoice.updated",
            target=("invoice", "x'\"\\y" if shared else f"id-{i}"),
            metadata=metadata[i],
            success=shared or bool(i),
            context=request_context(
                ip_address="2001:db8::1" if shared or i else None,
                user_agent=texts[0] if shared else texts[i],
                user_id=7 if shared or i else None,
                user_email="a@example.com",
            ),
        )
        for i in range(2)
    ]
    mark = AuditLog.objects.order_by("-id").values_list("id", flat=True).first() or 0
    services.insert_entries(entries)

    # As they read: the personal data of user 7 is stored sealed (audit/subjects.py).
    read = AuditLog.objects.filter(id__gt=mark).order_by("id")
    shown = [c for c in entries[0] if c not in subjects.STORED_ONLY]
    assert [{c: getattr(r, c) for c in shown} for r in read] == [
        {c: e[c] for c in shown} for e in entries
    ]
    assert verify_audit_log().ok


def test_a_process_older_than_a_column_still_appends_after_the_migration():
    """Between `migrate` and a restart, processes still send entries without the columns
    added since (their digests cover none of them): those are "" (audit/roles.py)."""
    if connection.vendor != "postgresql":
        pytest.skip("audit_append() is PostgreSQL's")
    values = services.stored([services.entry_values("invoice.updated", target=("invoice", 1))])
    older = {c: v for c, v in values[0].items() if c not in subjects.STORED_ONLY}

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id {services.APPEND_FROM}", [json.dumps(older), "[{}]"])
        (entry_id,) = cursor.fetchone()

    assert AuditLog.objects.filter(pk=entry_id).values("sealed", "ip_hash").get() == {
        "sealed": "",
        "ip_hash": "",
    }
    assert verify_audit_log().ok
