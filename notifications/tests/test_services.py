"""notify(): a notification of a registered type (text rendered from its parameters) and the
outbox rows of its channels, in the caller's transaction; reading them; the unread count."""

import datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.tests.helpers import entries_after, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from notifications import services, types
from notifications.models import Notification
from notifications.tests.factories import NotificationFactory

pytestmark = pytest.mark.django_db

EMAIL = (types.IN_APP, types.EMAIL)


class Rollback(Exception):
    """Raised inside a transaction to undo it."""


def emails_of(notification) -> list[EmailLog]:
    return list(EmailLog.objects.filter(notification=notification))


def message(title: str, body: str = "") -> dict:
    return {"title": title, "message": body}


# notify


def test_notify_stores_type_params_resource_and_actor_and_renders_the_text(user):
    actor = UserFactory()

    notification = services.notify(
        user,
        "account_activity",
        params={**message("New sign-in", "From Firefox on Linux."), "browser": "Firefox"},
        resource=user,
        actor=actor,
    )

    stored = Notification.objects.get(pk=notification.pk)
    assert (stored.user, stored.type, stored.actor) == (user, "account_activity", actor)
    assert (stored.title, stored.message) == ("New sign-in", "From Firefox on Linux.")
    assert (stored.resource_type, stored.resource_id) == ("user", str(user.pk))
    assert stored.params["browser"] == "Firefox"
    assert stored.read_at is None
    assert stored.is_read is False
    assert stored.created_at is not None


def test_notify_stores_params_as_they_read_back_from_json(user):
    moment = datetime.datetime(2030, 1, 31, 12, 0, tzinfo=datetime.UTC)

    notification = services.notify(
        user, "admin_message", params={"amount": Decimal("12.50"), "at": moment}
    )

    assert notification.params == {"amount": "12.50", "at": "2030-01-31T12:00:00Z"}
    assert Notification.objects.get(pk=notification.pk).params == notification.params


def test_notify_refuses_an_unregistered_type(user):
    with pytest.raises(KeyError, match="no_such_type"):
        services.notify(user, "no_such_type")

    assert not Notification.objects.exists()


def test_a_type_renders_the_text_of_rows_stored_before_it_rendered_its_own():
    old = NotificationFactory(type="invoice_paid", title="Invoice INV-1 paid", message="Paid.")

    assert (old.title, old.message) == ("Invoice INV-1 paid", "Paid.")


def test_registering_a_type_twice_is_refused():
    with pytest.raises(Exception, match="registered twice"):
        types.register_type("admin_message", title="{title}")


@pytest.mark.parametrize("channel", ["realtime", "webhook", "sms"])
def test_a_type_chooses_only_its_feed_and_email_channels(channel):
    """The live push follows the feed; a webhook is the user's choice, never a default."""
    with pytest.raises(ImproperlyConfigured, match="not a type's to choose"):
        types.register_type("new_kind", title="New", channels=(types.IN_APP, channel))
    assert types.find("new_kind") is None


def test_notify_queues_no_email_when_asked_for_the_app_only(user):
    notification = services.notify(
        user, "admin_message", params=message("Hi", "There"), channels=(types.IN_APP,)
    )

    assert emails_of(notification) == []
    assert not EmailLog.objects.exists()


def test_notify_on_the_email_channel_writes_a_linked_outbox_row_sent_after_commit(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        notification = services.notify(
            user, "admin_message", params=message("Maintenance", "Down at noon."), channels=EMAIL
        )
        [email] = emails_of(notification)
        assert email.status == EmailLog.Status.QUEUED
        assert email.to_email == user.email
        assert email.user == user
        assert email.template_name == "admin_message"
        assert email.subject == "Maintenance"
        assert mail.outbox == []  # nothing leaves before the transaction commits

    for callback in callbacks:
        callback()

    email.refresh_from_db()
    assert email.status == EmailLog.Status.SENT
    [sent] = mail.outbox
    assert sent.to == [user.email]
    assert sent.subject == "Maintenance"
    assert "Down at noon." in sent.body


def test_an_emailed_notification_is_escaped_in_the_html_part_only(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(
            user,
            "admin_message",
            params=message("Q&A <today>", "Use <b>bold</b> & more"),
            channels=EMAIL,
        )

    [sent] = mail.outbox
    [(html, _mimetype)] = sent.alternatives
    assert sent.subject == "Q&A <today>"
    assert "Use <b>bold</b> & more" in sent.body
    assert "Use &lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    assert "<b>bold</b>" not in html


def test_a_rolled_back_transaction_leaves_neither_notification_nor_email(
    user, django_capture_on_commit_callbacks
):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Rollback),
        transaction.atomic(),
    ):
        services.notify(user, "admin_message", params=message("Never"), channels=EMAIL)
        assert Notification.objects.count() == 1
        assert EmailLog.objects.count() == 1
        raise Rollback

    assert not Notification.objects.exists()
    assert not EmailLog.objects.exists()
    assert callbacks == []
    assert mail.outbox == []


# Admin messages


def test_send_admin_message_notifies_each_user_and_audits_one_broadcast():
    users = UserFactory.create_batch(3)
    mark = last_entry_id()

    sent = services.send_admin_message(users, title="Downtime", message="At noon.")

    assert sorted(n.user_id for n in sent) == sorted(u.pk for u in users)
    assert {(n.type, n.title, n.message) for n in sent} == {
        ("admin_message", "Downtime", "At noon.")
    }
    assert not EmailLog.objects.exists()
    entry = only_entry(mark, "admin.notification_broadcast")
    assert entry.metadata == {"count": 3, "title": "Downtime", "emailed": False, "skipped": 0}
    assert entries_after(mark).count() == 1  # not one entry per user


def test_send_admin_message_with_send_email_queues_one_email_per_user():
    users = UserFactory.create_batch(2)

    sent = services.send_admin_message(users, title="Downtime", message="At noon.", send_email=True)

    assert sorted(EmailLog.objects.values_list("to_email", flat=True)) == sorted(
        u.email for u in users
    )
    assert {email.notification for email in EmailLog.objects.all()} == set(sent)


# Reading


def test_mark_read_marks_an_unread_notification_read():
    notification = NotificationFactory()

    returned = services.mark_read(notification)

    assert returned.is_read
    notification.refresh_from_db()
    assert notification.read_at is not None


def test_mark_read_is_idempotent_and_keeps_the_first_read_moment():
    notification = NotificationFactory(read=True)
    first_read = notification.read_at

    services.mark_read(notification)
    services.mark_read(notification)

    notification.refresh_from_db()
    assert notification.read_at == first_read


def test_mark_all_read_returns_how_many_were_unread_and_leaves_others_alone(user):
    NotificationFactory.create_batch(3, user=user)
    already_read = NotificationFactory(user=user, read=True)
    someone_elses = NotificationFactory()

    marked = services.mark_all_read(user)

    assert marked == 3
    assert not user.notifications.filter(read_at__isnull=True).exists()
    kept = Notification.objects.get(pk=already_read.pk)
    assert kept.read_at == already_read.read_at
    assert Notification.objects.get(pk=someone_elses.pk).read_at is None
    assert services.mark_all_read(user) == 0


def test_mark_all_read_is_one_update_query(user):
    NotificationFactory.create_batch(5, user=user)

    with CaptureQueriesContext(connection) as queries:
        services.mark_all_read(user)

    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().upper().startswith("UPDATE")


def test_unread_count_follows_create_read_mark_all_read_and_delete(user):
    count = services.unread_count
    first, second, _third = NotificationFactory.create_batch(3, user=user)
    NotificationFactory(user=user, read=True)
    NotificationFactory()  # someone else's
    assert count(user) == 3

    services.mark_read(first)
    assert count(user) == 2

    second.delete()
    assert count(user) == 1

    services.notify(user, "admin_message", params=message("One more"))
    assert count(user) == 2

    services.mark_all_read(user)
    assert count(user) == 0


def test_deleting_a_user_deletes_their_notifications_and_no_one_elses(user):
    other = UserFactory()
    NotificationFactory.create_batch(2, user=user)
    NotificationFactory.create_batch(2, user=other)
    user_id = user.pk

    user.delete()

    assert not Notification.objects.filter(user_id=user_id).exists()
    assert services.unread_count(other) == 2
