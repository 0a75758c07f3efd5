"""The Django admin of notifications and the users' "send a message" action, used by a
superuser."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse

from audit.tests.helpers import last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from notifications.models import Notification
from notifications.tests.factories import NotificationFactory

pytestmark = pytest.mark.django_db

NOTIFICATIONS = reverse("admin:notifications_notification_changelist")
USERS = reverse("admin:accounts_user_changelist")


def listed(response) -> set[int]:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


# Notifications


def test_notification_changelist_lists_notifications(admin):
    notifications = NotificationFactory.create_batch(3)

    response = admin.get(NOTIFICATIONS)

    assert listed(response) == {n.pk for n in notifications}
    assert notifications[0].title in response.text


def test_notification_changelist_searches_by_exact_user_email(admin):
    ada = NotificationFactory(user=UserFactory(email="ada@example.com"))
    NotificationFactory(user=UserFactory(email="grace@example.com"))

    by_email = admin.get(NOTIFICATIONS, {"q": "ada@example.com"})

    assert listed(by_email) == {ada.pk}


def test_notification_changelist_filters_by_type_and_read_state(admin):
    paid = NotificationFactory(type="invoice_paid")
    read = NotificationFactory(read=True)

    by_type = admin.get(NOTIFICATIONS, {"type__exact": "invoice_paid"})
    unread = admin.get(NOTIFICATIONS, {"read_at__isempty": "1"})
    already_read = admin.get(NOTIFICATIONS, {"read_at__isempty": "0"})

    assert listed(by_type) == {paid.pk}
    assert listed(unread) == {paid.pk}
    assert listed(already_read) == {read.pk}
    offered = {spec.field_path for spec in by_type.context["cl"].filter_specs}
    assert {"type", "read_at", "created_at"} <= offered


def test_notification_change_page_shows_it_read_only_and_none_can_be_added(admin):
    notification = NotificationFactory(title="Read me")

    change = admin.get(reverse("admin:notifications_notification_change", args=[notification.pk]))
    add = admin.get(reverse("admin:notifications_notification_add"))

    assert change.status_code == 200
    assert "Read me" in change.text
    assert 'name="title"' not in change.text  # shown, not editable
    assert add.status_code == 403


# Users: send a message


def send_message(admin, users, **form):
    data = {"action": "send_message", ACTION_CHECKBOX_NAME: [u.pk for u in users], **form}
    return admin.post(USERS, data)


def test_send_message_action_first_asks_for_the_message(admin):
    ada, grace = UserFactory(email="ada@example.com"), UserFactory(email="grace@example.com")

    response = send_message(admin, [ada, grace])

    assert response.status_code == 200
    assert "admin/accounts/user/send_message.html" in [t.name for t in response.templates]
    assert "ada@example.com" in response.text
    assert "grace@example.com" in response.text
    for field in ("title", "message", "send_email"):
        assert f'name="{field}"' in response.text
    assert not Notification.objects.exists()


def test_send_message_apply_notifies_each_selected_user_once(admin, superuser):
    selected = UserFactory.create_batch(2)
    not_selected = UserFactory()
    mark = last_entry_id()

    response = send_message(
        admin, selected, apply="Send", title="Downtime", message="Saturday at noon."
    )

    assert response.status_code == 302
    sent = Notification.objects.filter(type="admin_message")
    assert sorted(sent.values_list("user_id", flat=True)) == sorted(u.pk for u in selected)
    assert {(n.title, n.message) for n in sent} == {("Downtime", "Saturday at noon.")}
    assert not Notification.objects.filter(user=not_selected).exists()
    assert not EmailLog.objects.exists()
    entry = only_entry(mark, "admin.notification_broadcast")
    assert entry.user_id == superuser.pk
    assert entry.metadata["count"] == 2


def test_send_message_apply_with_send_email_emails_each_selected_user(
    admin, django_capture_on_commit_callbacks
):
    selected = UserFactory.create_batch(2)

    with django_capture_on_commit_callbacks(execute=True):
        response = send_message(
            admin,
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
    assert set(EmailLog.objects.values_list("notification__params__title", flat=True)) == {
        "Downtime"
    }


def test_send_message_apply_without_a_title_asks_again_and_sends_nothing(admin):
    user = UserFactory()

    response = send_message(admin, [user], apply="Send", title="", message="Body")

    assert response.status_code == 200
    assert "admin/accounts/user/send_message.html" in [t.name for t in response.templates]
    assert response.context["form"].errors.keys() == {"title"}
    assert not Notification.objects.exists()


def test_send_message_skips_inactive_and_unverified_users_and_says_so(
    admin, django_capture_on_commit_callbacks
):
    reachable = UserFactory(email="ada@example.com")
    unverified = UserFactory(email="unconfirmed@example.com", email_verified=False)
    inactive = UserFactory(email="gone@example.com", is_active=False)
    mark = last_entry_id()

    with django_capture_on_commit_callbacks(execute=True):
        response = send_message(
            admin,
            [reachable, unverified, inactive],
            apply="Send",
            title="Downtime",
            message="Saturday at noon.",
            send_email="on",
        )

    assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    assert list(Notification.objects.values_list("user_id", flat=True)) == [reachable.pk]
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == ["Message sent to 1 user(s). Skipped 2 inactive or unverified user(s)."]
    entry = only_entry(mark, "admin.notification_broadcast")
    assert (entry.metadata["count"], entry.metadata["skipped"]) == (1, 2)
