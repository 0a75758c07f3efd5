"""The Django admin of notifications, the users' "send a message" action and the email
outbox (emails.EmailLog), used by a superuser."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse

from audit.tests.helpers import last_entry_id, only_entry
from emails.models import EmailLog
from emails.services import LINK_PLACEHOLDER
from invoicegen.accounts import services as accounts
from invoicegen.accounts.tests.factories import UserFactory
from notifications.models import Notification
from notifications.tests.factories import EmailLogFactory, NotificationFactory

pytestmark = pytest.mark.django_db

NOTIFICATIONS = reverse("admin:notifications_notification_changelist")
USERS = reverse("admin:accounts_user_changelist")
OUTBOX = reverse("admin:emails_emaillog_changelist")


@pytest.fixture
def superuser():
    return UserFactory(email="root@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_site(client, superuser):
    client.force_login(superuser)
    return client


def listed(response) -> set[int]:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


# Notifications


def test_notification_changelist_lists_notifications(admin_site):
    notifications = NotificationFactory.create_batch(3)

    response = admin_site.get(NOTIFICATIONS)

    assert listed(response) == {n.pk for n in notifications}
    assert notifications[0].title in response.text


def test_notification_changelist_searches_by_exact_user_email_and_by_title(admin_site):
    ada = NotificationFactory(user=UserFactory(email="ada@example.com"), title="Quarterly report")
    grace = NotificationFactory(user=UserFactory(email="grace@example.com"), title="Invoice paid")

    by_email = admin_site.get(NOTIFICATIONS, {"q": "ada@example.com"})
    by_title = admin_site.get(NOTIFICATIONS, {"q": "paid"})

    assert listed(by_email) == {ada.pk}
    assert listed(by_title) == {grace.pk}


def test_notification_changelist_filters_by_type_and_read_state(admin_site):
    paid = NotificationFactory(type=Notification.Type.INVOICE_PAID)
    read = NotificationFactory(read=True)

    by_type = admin_site.get(NOTIFICATIONS, {"type__exact": "invoice_paid"})
    unread = admin_site.get(NOTIFICATIONS, {"read_at__isempty": "1"})
    already_read = admin_site.get(NOTIFICATIONS, {"read_at__isempty": "0"})

    assert listed(by_type) == {paid.pk}
    assert listed(unread) == {paid.pk}
    assert listed(already_read) == {read.pk}
    offered = {spec.field_path for spec in by_type.context["cl"].filter_specs}
    assert {"type", "read_at", "created_at"} <= offered


def test_notification_change_page_shows_it_read_only_and_none_can_be_added(admin_site):
    notification = NotificationFactory(title="Read me")

    change = admin_site.get(
        reverse("admin:notifications_notification_change", args=[notification.pk])
    )
    add = admin_site.get(reverse("admin:notifications_notification_add"))

    assert change.status_code == 200
    assert "Read me" in change.text
    assert 'name="title"' not in change.text  # shown, not editable
    assert add.status_code == 403


# Users: send a message


def send_message(admin_site, users, **form):
    data = {"action": "send_message", ACTION_CHECKBOX_NAME: [u.pk for u in users], **form}
    return admin_site.post(USERS, data)


def test_send_message_action_first_asks_for_the_message(admin_site):
    ada, grace = UserFactory(email="ada@example.com"), UserFactory(email="grace@example.com")

    response = send_message(admin_site, [ada, grace])

    assert response.status_code == 200
    assert "admin/accounts/user/send_message.html" in [t.name for t in response.templates]
    assert "ada@example.com" in response.text
    assert "grace@example.com" in response.text
    for field in ("title", "message", "send_email"):
        assert f'name="{field}"' in response.text
    assert not Notification.objects.exists()


def test_send_message_apply_notifies_each_selected_user_once(admin_site, superuser):
    selected = UserFactory.create_batch(2)
    not_selected = UserFactory()
    mark = last_entry_id()

    response = send_message(
        admin_site, selected, apply="Send", title="Downtime", message="Saturday at noon."
    )

    assert response.status_code == 302
    sent = Notification.objects.filter(type=Notification.Type.ADMIN_MESSAGE)
    assert sorted(sent.values_list("user_id", flat=True)) == sorted(u.pk for u in selected)
    assert {(n.title, n.message) for n in sent} == {("Downtime", "Saturday at noon.")}
    assert not Notification.objects.filter(user=not_selected).exists()
    assert not EmailLog.objects.exists()
    entry = only_entry(mark, "admin.notification_broadcast")
    assert entry.user_id == superuser.pk
    assert entry.metadata["count"] == 2


def test_send_message_apply_with_send_email_emails_each_selected_user(
    admin_site, django_capture_on_commit_callbacks
):
    selected = UserFactory.create_batch(2)

    with django_capture_on_commit_callbacks(execute=True):
        response = send_message(
            admin_site,
            selected,
            apply="Send",
            title="Downtime",
            message="Saturday at noon.",
            send_email="on",
        )

    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in selected)
    assert {m.subject for m in mail.outbox} == {"Downtime"}
    assert all("Saturday at noon." in m.body for m in mail.outbox)
    assert set(EmailLog.objects.values_list("status", flat=True)) == {EmailLog.Status.SENT}
    assert set(EmailLog.objects.values_list("notification__title", flat=True)) == {"Downtime"}


def test_send_message_apply_without_a_title_asks_again_and_sends_nothing(admin_site):
    user = UserFactory()

    response = send_message(admin_site, [user], apply="Send", title="", message="Body")

    assert response.status_code == 200
    assert "admin/accounts/user/send_message.html" in [t.name for t in response.templates]
    assert response.context["form"].errors.keys() == {"title"}
    assert not Notification.objects.exists()


# The email outbox


def test_outbox_changelist_lists_rows_and_filters_by_status(admin_site):
    sent = EmailLogFactory(status=EmailLog.Status.SENT)
    failed = EmailLogFactory(failed=True)

    everything = admin_site.get(OUTBOX)
    only_failed = admin_site.get(OUTBOX, {"status__exact": "failed"})

    assert listed(everything) == {sent.pk, failed.pk}
    assert listed(only_failed) == {failed.pk}
    assert "status" in {spec.field_path for spec in everything.context["cl"].filter_specs}


def test_outbox_change_page_shows_the_message_with_a_placeholder_for_its_secret_link(
    admin_site, user
):
    accounts.request_password_reset(email=user.email)
    row = EmailLog.objects.get(template_name="password_reset")
    reset_url = accounts.make_reset_link(row)["reset_url"]

    response = admin_site.get(reverse("admin:emails_emaillog_change", args=[row.pk]))

    assert response.status_code == 200
    assert "somebody (we hope you) asked to reset your password" in response.text
    assert LINK_PLACEHOLDER in response.text
    assert "reset-password?uid=" not in response.text
    assert reset_url.rpartition("token=")[2] not in response.text


def run_action(admin_site, action: str, rows):
    return admin_site.post(OUTBOX, {"action": action, ACTION_CHECKBOX_NAME: [r.pk for r in rows]})


def test_retry_action_queues_a_failed_row_again_and_audits_it(admin_site, superuser):
    failed = EmailLogFactory(failed=True)
    sent = EmailLogFactory(status=EmailLog.Status.SENT)
    mark = last_entry_id()

    response = run_action(admin_site, "retry_selected", [failed, sent])

    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (EmailLog.Status.QUEUED, 0)
    assert EmailLog.objects.get(pk=sent.pk).status == EmailLog.Status.SENT
    entry = only_entry(mark, "admin.email_retried")  # the sent row is not retried
    assert (entry.resource_type, entry.resource_id) == ("email", str(failed.pk))
    assert entry.user_id == superuser.pk


def test_a_retried_row_is_sent_with_its_own_message_id(
    admin_site, django_capture_on_commit_callbacks
):
    failed = EmailLogFactory(failed=True, subject="Downtime")

    with django_capture_on_commit_callbacks(execute=True):
        run_action(admin_site, "retry_selected", [failed])

    failed.refresh_from_db()
    assert failed.status == EmailLog.Status.SENT
    [message] = mail.outbox
    assert message.message()["Message-ID"] == failed.message_id
    assert message.subject == "Downtime"


def test_resend_action_queues_a_new_copy_and_audits_it(
    admin_site, superuser, django_capture_on_commit_callbacks
):
    original = EmailLogFactory(status=EmailLog.Status.SENT, subject="Downtime")
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_site, "resend_selected", [original])

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
