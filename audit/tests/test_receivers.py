"""Receivers in long-lived processes: a Celery worker or a web worker reconnects its one
connection object thousands of times, and nothing may pile up on it."""

import pytest
from django.db import connection

from audit.models import AuditLog
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import InvoiceFactory

# Not inside a test transaction: the connection is closed and opened as a worker's is.
pytestmark = pytest.mark.django_db(transaction=True)

RECONNECTS = 1000  # one wrapper per reconnect overflowed Python's stack after ~940


def test_a_thousand_reconnects_leave_one_wrapper_and_capture_still_works():
    invoice = InvoiceFactory()
    installed = list(connection.execute_wrappers)

    for _ in range(RECONNECTS):
        connection.close()
        connection.ensure_connection()

    assert connection.execute_wrappers == installed
    assert len(installed) == (1 if connection.vendor == "postgresql" else 0)
    invoice = Invoice.objects.get(pk=invoice.pk)
    invoice.client_name = "Renamed"
    invoice.save(update_fields=["client_name", "updated_at"])
    entries = AuditLog.objects.filter(action="invoice.updated", resource_id=str(invoice.pk))
    assert [entry.metadata["changes"]["client_name"][1] for entry in entries] == ["Renamed"]
