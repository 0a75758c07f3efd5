"""Pages of rows that change only through their services (invoicegen/core/admin.py
ServiceOnlyAdmin) show the row with nothing to save: no save button, and a POST to the page
saves nothing and records nothing in the trail."""

import pytest
from django.contrib import admin as django_admin
from django.urls import reverse

from audit import holds
from audit.models import AdminAction, AuditLog
from downloads import services as downloads
from emails import delivery
from emails import services as emails
from emails.models import EmailOptOut
from invoicegen.billing import services as billing
from invoicegen.billing.tests.factories import (
    InvoiceReminderFactory,
    SubscriptionFactory,
    invoice_in_status,
)
from invoicegen.core.admin import ServiceOnlyAdmin
from webhooks import services as webhooks

pytestmark = pytest.mark.django_db


def rows(user) -> dict:
    invoice = invoice_in_status("finalized", user=user)
    link, _ = downloads.issue_download_token("invoice", invoice.pk, created_by=user)
    endpoint, _ = webhooks.create_endpoint(
        user, url="https://hooks.example.com/", event_types=["*"], actor=user
    )
    return {
        "billing.invoice": invoice,
        "billing.subscription": SubscriptionFactory(user=user),
        "billing.invoicereminder": InvoiceReminderFactory(
            invoice=invoice_in_status("sent", user=user)
        ),
        "billing.businessprofile": billing.update_business_profile(user, legal_name="Ada Ltd"),
        "emails.emaillog": emails.queue_email(
            "welcome", to="ada@example.com", context={"name": "Ada"}
        ),
        "downloads.securedownloadtoken": link,
        "emails.emailsuppression": delivery.suppress_address(
            "gone@example.com", reason="bounced", source="postmark"
        ),
        "emails.emailoptout": EmailOptOut.objects.create(
            address="ap@example.com", topic="invoice_reminder", sender=user
        ),
        "webhooks.webhookendpoint": endpoint,
        "webhooks.webhookdelivery": webhooks.send_event(user, "invoice.paid", {"id": 1})[0],
        "audit.legalhold": holds.place_legal_hold(reason="a case", via="admin"),
    }


def test_every_service_only_page_is_covered(user):
    service_only = {
        model._meta.label_lower
        for model, model_admin in django_admin.site._registry.items()
        if isinstance(model_admin, ServiceOnlyAdmin)
    }

    assert service_only == set(rows(user))


@pytest.mark.parametrize(
    "label",
    [
        "billing.invoice",
        "billing.subscription",
        "billing.invoicereminder",
        "billing.businessprofile",
        "emails.emaillog",
        "downloads.securedownloadtoken",
        "emails.emailsuppression",
        "emails.emailoptout",
        "webhooks.webhookendpoint",
        "webhooks.webhookdelivery",
        "audit.legalhold",
    ],
)
def test_a_service_only_page_has_nothing_to_save_and_a_post_changes_nothing(admin, user, label):
    row = rows(user)[label]
    url = reverse(f"admin:{label.replace('.', '_')}_change", args=[row.pk])
    before = {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields}
    entries, actions = AuditLog.objects.count(), AdminAction.objects.count()

    page = admin.get(url)
    post = admin.post(
        url,
        {
            "_save": "Save",
            "status": "paid",
            "outcome": "skipped",
            "to_email": "x@example.com",
            "legal_name": "X",
        },
    )

    assert page.status_code == 200
    assert 'name="_save"' not in page.text and 'name="_continue"' not in page.text
    assert post.status_code == 405
    row.refresh_from_db()
    assert {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields} == before
    assert (AuditLog.objects.count(), AdminAction.objects.count()) == (entries, actions)
