"""Secret links are made when an email is rendered for sending, and one email carries one link:
every delivery of the same outbox row (a retry after a refusal, a copy sent again after its
lease) has the URL of the first, through a real SMTP server."""

import pytest
from django.apps import apps
from django.core.cache import cache
from django.db import models
from django.test import Client

from audit.tests.helpers import last_entry_id, only_entry
from downloads.models import SecureDownloadToken
from downloads.tests.helpers import LINK, path_of
from emails import services
from emails.models import EmailLog
from emails.tests.helpers import make_due, stuck_in_sending
from invoicegen.billing import services as billing
from invoicegen.billing.tests.factories import finalized_invoice

pytestmark = pytest.mark.django_db

CLIENT = "ap@globex.example"
TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def stored_text_holding(secret: str) -> list[str]:
    """Every `table.column` of the links, the outbox and the audit trail whose value holds
    `secret` (text and JSON columns, read back as the database keeps them)."""
    found = []
    for label in ("downloads", "emails", "audit"):
        for model in apps.get_app_config(label).get_models():
            for field in model._meta.concrete_fields:
                if not isinstance(field, TEXT_FIELDS):
                    continue
                values = model.objects.values_list(field.attname, flat=True)
                if any(secret in str(value) for value in values):
                    found.append(f"{model._meta.db_table}.{field.column}")
    return found


def test_every_delivery_of_the_clients_email_carries_the_link_its_first_attempt_made(
    smtp, settings, django_capture_on_commit_callbacks
):
    invoice = finalized_invoice(client_email=CLIENT)
    smtp.answer("451 4.3.0 Try again later", to=CLIENT, times=1)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        billing.send_invoice(invoice)
    email = EmailLog.objects.get(to_email=CLIENT)
    assert smtp.refused == ["451 4.3.0 Try again later"]
    assert EmailLog.objects.get(pk=email.pk).status == EmailLog.Status.QUEUED

    make_due(email)
    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT
    # A worker killed right after the server accepted, before anything recorded it: the
    # row is still `sending` and nothing remembers the acceptance, so it is sent again.
    stuck_in_sending(email, seconds_ago=settings.EMAIL_SENDING_LEASE_SECONDS + 1)
    cache.clear()
    assert services.deliver_email(email.pk).status == EmailLog.Status.SENT

    copies = [message for message in smtp.messages if message["To"] == CLIENT]
    assert [copy["Message-ID"] for copy in copies] == [email.message_id] * 2
    [first_url, second_url] = [
        LINK.search(copy.get_body(("plain",)).get_content()) for copy in copies
    ]
    assert first_url.group(0) == second_url.group(0)
    raw = first_url.group(1)
    [token] = SecureDownloadToken.objects.filter(email=email)
    assert token.revoked_at is None
    assert only_entry(mark, "download.link_created").metadata["token_id"] == token.pk
    assert Client().post(path_of(raw)).status_code == 200
    assert stored_text_holding(raw) == []
    assert stored_text_holding(token.token_hash) == ["downloads_securedownloadtoken.token_hash"]
