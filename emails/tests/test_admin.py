"""The email outbox (EmailLog) in the Django admin, used by a superuser: its rows, the
message with placeholders for its secrets, retrying and resending."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse

from audit.tests.helpers import last_entry_id, only_entry
from emails.models import EmailLog, EmailOptOut
from emails.services import LINK_PLACEHOLDER
from emails.tests.factories import EmailLogFactory
from invoicegen.accounts import services as accounts

pytestmark = pytest.mark.django_db

OUTBOX = reverse("admin:emails_emaillog_changelist")


def listed(response) -> set[int]:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_outbox_changelist_lists_rows_and_filters_by_status(admin):
    sent = EmailLogFactory(status=EmailLog.Status.SENT)
    failed = EmailLogFactory(failed=True)

    everything = admin.get(OUTBOX)
    only_failed = admin.get(OUTBOX, {"status__exact": "failed"})

    assert listed(everything) == {sent.pk, failed.pk}
    assert listed(only_failed) == {failed.pk}
    assert "status" in {spec.field_path for spec in everything.context["cl"].filter_specs}


def test_digests_and_unsubscribes_are_found_in_the_outbox_by_kind(admin, user):
    digest = EmailLogFactory(template_name="notification_digest", topic="digest.daily")
    refused = EmailLogFactory(
        template_name="invoice_reminder", topic="invoice_reminder", delivery_status="unsubscribed"
    )
    EmailLogFactory()
    opt_out = EmailOptOut.objects.create(address="ap@client.example", topic="x", sender=user)

    digests = admin.get(OUTBOX, {"template_name__exact": "notification_digest"})
    by_topic = admin.get(OUTBOX, {"topic__exact": "digest.daily"})
    unsubscribed = admin.get(OUTBOX, {"delivery_status__exact": "unsubscribed"})
    opt_outs = admin.get(reverse("admin:emails_emailoptout_changelist"), {"q": "AP@client.example"})

    assert listed(digests) == listed(by_topic) == {digest.pk}
    assert listed(unsubscribed) == {refused.pk}
    assert listed(opt_outs) == {opt_out.pk}


def test_outbox_change_page_shows_the_message_with_a_placeholder_for_its_secret_link(admin, user):
    accounts.request_password_reset(email=user.email)
    row = EmailLog.objects.get(template_name="password_reset")
    reset_url = accounts.make_reset_link(row)["reset_url"]

    response = admin.get(reverse("admin:emails_emaillog_change", args=[row.pk]))

    assert response.status_code == 200
    assert "Somebody (we hope you) asked to reset your password" in response.text
    assert LINK_PLACEHOLDER in response.text
    assert "reset-password?uid=" not in response.text
    assert reset_url.rpartition("token=")[2] not in response.text


def run_action(admin, action: str, rows):
    return admin.post(OUTBOX, {"action": action, ACTION_CHECKBOX_NAME: [r.pk for r in rows]})


def test_retry_action_queues_a_failed_row_again_and_audits_it(admin, superuser):
    failed = EmailLogFactory(failed=True)
    sent = EmailLogFactory(status=EmailLog.Status.SENT)
    mark = last_entry_id()

    response = run_action(admin, "retry_selected", [failed, sent])

    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (EmailLog.Status.QUEUED, 0)
    assert EmailLog.objects.get(pk=sent.pk).status == EmailLog.Status.SENT
    entry = only_entry(mark, "admin.email_retried")  # the sent row is not retried
    assert (entry.resource_type, entry.resource_id) == ("email", str(failed.pk))
    assert entry.user_id == superuser.pk


def test_a_retried_row_is_sent_with_its_own_message_id(admin, django_capture_on_commit_callbacks):
    failed = EmailLogFactory(failed=True, subject="Downtime")

    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin, "retry_selected", [failed])

    failed.refresh_from_db()
    assert failed.status == EmailLog.Status.SENT
    [message] = mail.outbox
    assert message.message()["Message-ID"] == failed.message_id
    assert message.subject == "Downtime"


def test_resend_action_queues_a_new_copy_and_audits_it(
    admin, superuser, django_capture_on_commit_callbacks
):
    original = EmailLogFactory(status=EmailLog.Status.SENT, subject="Downtime")
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin, "resend_selected", [original])

    assert response.status_code == 302
    copy = EmailLog.objects.exclude(pk=original.pk).get()
    assert (copy.to_email, copy.template_name, copy.context) == (
        original.to_email,
        original.template_name,
        original.context,
    )
    assert copy.message_id != original.message_id
    assert copy.status == EmailLog.Status.SENT
    [message] = mail.outbox
    assert message.message()["Message-ID"] == copy.message_id
    assert EmailLog.objects.get(pk=original.pk).status == EmailLog.Status.SENT
    entry = only_entry(mark, "admin.email_resent")
    assert (entry.resource_type, entry.resource_id) == ("email", str(original.pk))
    assert entry.metadata == {"copy_id": copy.pk}
    assert entry.user_id == superuser.pk
