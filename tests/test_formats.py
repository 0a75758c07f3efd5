"""Times in the admin read with their seconds and zone (invoicegen/formats/), on list pages and
on the pages of single rows alike."""

import datetime

import pytest
from django.urls import reverse

from audit.tests.factories import AuditLogFactory
from invoicegen.billing.tests.factories import invoice_in_status

pytestmark = pytest.mark.django_db


def shown(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_a_list_page_shows_times_with_seconds_and_zone(admin):
    entry = AuditLogFactory()

    page = admin.get(reverse("admin:audit_auditlog_changelist")).content.decode()

    assert f'<td class="field-created_at nowrap">{shown(entry.created_at)}</td>' in page


def test_a_detail_page_shows_times_with_seconds_and_zone(admin):
    invoice = invoice_in_status("sent")

    page = admin.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).content.decode()

    assert f'<div class="readonly">{shown(invoice.sent_at)}</div>' in page
