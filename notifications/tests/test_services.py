"""NotificationService: creating notifications (with their outbox emails), reading them, and
the unread count."""

import datetime
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.tests.helpers import entries_after, last_entry_id, only_entry
from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.models import Subscription
from invoicegen.billing.tests.factories import InvoiceFactory, SubscriptionFactory
from notifications import services
from notifications.models import Notification
from notifications.services import NotificationService
from notifications.tests.factories import NotificationFactory

pytestmark = pytest.mark.django_db

Type = Notification.Type


class Rollback(Exception):
    """Raised inside a transaction to undo it."""


def emails_of(notification) -> list[EmailLog]:
    return list(EmailLog.objects.filter(notification=notification))


# create_notification


def test_create_notification_stores_an_unread_notification_with_its_resource(user):
    notification = NotificationService.create_notification(
        user.pk,
        Type.ACCOUNT_ACTIVITY,
        "New sign-in",
        "From Firefox on Linux.",
        resource_type="user",
        resource_id=user.pk,
        metadata={"browser": "Firefox"},
    )

    stored = Notification.objects.get(pk=notification.pk)
    assert stored.user == user
    assert stored.type == "account_activity"
    assert (stored.title, stored.message) == ("New sign-in", "From Firefox on Linux.")
    assert (stored.resource_type, stored.resource_id) == ("user", str(user.pk))
    assert stored.metadata == {"browser": "Firefox"}
    assert stored.read_at is None
    assert stored.is_read is False
    assert stored.created_at is not None


def test_create_notification_stores_metadata_as_it_reads_back_from_json(user):
    moment = datetime.datetime(2030, 1, 31, 12, 0, tzinfo=datetime.UTC)

    notification = services.create_notification(
        user.pk,
        Type.ACCOUNT_ACTIVITY,
        "Refund",
        metadata={"amount": Decimal("12.50"), "at": moment},
    )

    assert notification.metadata == {"amount": "12.50", "at": "2030-01-31T12:00:00Z"}
    assert Notification.objects.get(pk=notification.pk).metadata == notification.metadata


def test_create_notification_refuses_an_unknown_type(user):
    with pytest.raises(ValueError, match="no_such_type"):
        services.create_notification(user.pk, "no_such_type", "Title")

    assert not Notification.objects.exists()


def test_create_notification_without_send_email_queues_no_email(user):
    notification = services.create_notification(user.pk, Type.ADMIN_MESSAGE, "Hi", "There")

    assert emails_of(notification) == []
    assert not EmailLog.objects.exists()


def test_create_notification_with_send_email_writes_a_linked_outbox_row_sent_after_commit(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        notification = services.create_notification(
            user.pk, Type.ADMIN_MESSAGE, "Maintenance", "Down at noon.", send_email=True
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
    [message] = mail.outbox
    assert message.to == [user.email]
    assert message.subject == "Maintenance"
    assert "Down at noon." in message.body


def test_an_emailed_notification_is_escaped_in_the_html_part_only(
    user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.create_notification(
            user.pk, Type.ADMIN_MESSAGE, "Q&A <today>", "Use <b>bold</b> & more", send_email=True
        )

    [message] = mail.outbox
    [(html, _mimetype)] = message.alternatives
    assert message.subject == "Q&A <today>"
    assert "Use <b>bold</b> & more" in message.body
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
        services.create_notification(
            user.pk, Type.ADMIN_MESSAGE, "Never", "Rolled back.", send_email=True
        )
        assert Notification.objects.count() == 1
        assert EmailLog.objects.count() == 1
        raise Rollback

    assert not Notification.objects.exists()
    assert not EmailLog.objects.exists()
    assert callbacks == []
    assert mail.outbox == []


# Invoices


def test_notify_invoice_finalized_notifies_and_emails_the_owner_only():
    invoice = InvoiceFactory()

    notification = NotificationService.notify_invoice_finalized(invoice)

    assert notification.user == invoice.user
    assert notification.type == Type.INVOICE_FINALIZED
    assert notification.title == f"Invoice {invoice.number} finalized"
    assert (notification.resource_type, notification.resource_id) == ("invoice", str(invoice.pk))
    assert notification.metadata == {
        "invoice_number": invoice.number,
        "total": f"{invoice.total} USD",
    }
    [email] = EmailLog.objects.all()
    assert email.notification == notification
    assert email.to_email == invoice.user.email
    assert email.template_name == "invoice_notification_user"
    assert email.subject == f"Invoice {invoice.number} is finalized"
    assert (email.resource_type, email.resource_id) == ("invoice", str(invoice.pk))


def test_notify_invoice_sent_emails_the_owner_and_the_client_at_its_client_email():
    invoice = InvoiceFactory(client_email="billing@acme.example")

    notification = NotificationService.notify_invoice_sent(invoice)

    assert notification.type == Type.INVOICE_SENT
    assert notification.message == "Sent to billing@acme.example."
    owner_email = EmailLog.objects.get(template_name="invoice_notification_user")
    client_email = EmailLog.objects.get(template_name="invoice_notification_client")
    assert owner_email.to_email == invoice.user.email
    assert owner_email.notification == notification
    assert client_email.to_email == "billing@acme.example"
    assert client_email.user is None  # the client is not one of our users
    assert (client_email.resource_type, client_email.resource_id) == ("invoice", str(invoice.pk))


def test_notify_invoice_sent_emails_the_client_at_the_given_address():
    invoice = InvoiceFactory(client_email="billing@acme.example")

    notification = NotificationService.notify_invoice_sent(invoice, to="boss@acme.example")

    assert notification.message == "Sent to boss@acme.example."
    recipients = EmailLog.objects.filter(template_name="invoice_notification_client")
    assert list(recipients.values_list("to_email", flat=True)) == ["boss@acme.example"]


def test_notify_invoice_paid_notifies_and_emails_the_owner_only():
    invoice = InvoiceFactory(client_name="Acme Ltd")

    notification = NotificationService.notify_invoice_paid(invoice)

    assert notification.type == Type.INVOICE_PAID
    assert notification.title == f"Invoice {invoice.number} paid"
    assert notification.message == f"Acme Ltd paid {invoice.total} USD in full."
    [email] = EmailLog.objects.all()
    assert (email.to_email, email.notification) == (invoice.user.email, notification)
    assert email.subject == f"Invoice {invoice.number} is paid"


# Subscriptions, accounts


@pytest.mark.parametrize(
    ("notification_type", "title"),
    [
        (Type.SUBSCRIPTION_ACTIVATED, "Your business subscription is active"),
        (Type.SUBSCRIPTION_CANCELLED, "Your business subscription is cancelled"),
        (Type.SUBSCRIPTION_RENEWED, "Your business subscription is renewed"),
    ],
)
def test_notify_subscription_notifies_and_emails_the_subscriber(notification_type, title):
    subscription = SubscriptionFactory(plan=Subscription.Plan.BUSINESS)

    notification = NotificationService.notify_subscription(subscription, notification_type)

    end = subscription.current_period_end
    assert notification.user == subscription.user
    assert (notification.type, notification.title) == (notification_type, title)
    assert notification.message == f"Current period ends {end:%Y-%m-%d}."
    assert (notification.resource_type, notification.resource_id) == (
        "subscription",
        str(subscription.pk),
    )
    assert notification.metadata["plan"] == "business"
    assert notification.metadata["period_end"].startswith(f"{end:%Y-%m-%dT%H:%M:%S}")
    [email] = emails_of(notification)
    assert email.template_name == "subscription_notification"
    assert (email.to_email, email.subject) == (subscription.user.email, title)


def test_notify_password_reset_requested_notifies_without_an_email_of_its_own(user):
    notification = NotificationService.notify_password_reset_requested(user)

    assert notification.user == user
    assert notification.type == Type.PASSWORD_RESET_REQUESTED
    assert (notification.resource_type, notification.resource_id) == ("user", str(user.pk))
    assert emails_of(notification) == []  # the reset email itself is the accounts app's


@pytest.mark.parametrize(("send_email", "emails"), [(False, 0), (True, 1)])
def test_notify_account_activity_emails_only_when_asked(user, send_email, emails):
    notification = NotificationService.notify_account_activity(
        user,
        title="Email changed",
        message="Your email is now new@example.com.",
        send_email=send_email,
    )

    assert notification.type == Type.ACCOUNT_ACTIVITY
    assert (notification.title, notification.message) == (
        "Email changed",
        "Your email is now new@example.com.",
    )
    assert len(emails_of(notification)) == emails


# Admin messages


def test_send_admin_message_notifies_each_user_and_audits_one_broadcast():
    users = UserFactory.create_batch(3)
    mark = last_entry_id()

    sent = NotificationService.send_admin_message(users, title="Downtime", message="At noon.")

    assert sorted(n.user_id for n in sent) == sorted(u.pk for u in users)
    assert {(n.type, n.title, n.message) for n in sent} == {
        (Type.ADMIN_MESSAGE, "Downtime", "At noon.")
    }
    assert not EmailLog.objects.exists()
    entry = only_entry(mark, "admin.notification_broadcast")
    assert entry.metadata == {"count": 3, "title": "Downtime", "emailed": False}
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

    returned = NotificationService.mark_read(notification)

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

    marked = NotificationService.mark_all_read(user)

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
    count = NotificationService.unread_count
    first, second, _third = NotificationFactory.create_batch(3, user=user)
    NotificationFactory(user=user, read=True)
    NotificationFactory()  # someone else's
    assert count(user) == 3

    services.mark_read(first)
    assert count(user) == 2

    second.delete()
    assert count(user) == 1

    services.create_notification(user.pk, Type.ADMIN_MESSAGE, "One more")
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
