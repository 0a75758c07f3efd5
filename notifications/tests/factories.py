import datetime

import factory
from django.utils import timezone

from emails.models import EmailLog
from invoicegen.accounts.tests.factories import UserFactory
from notifications.models import Notification


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    user = factory.SubFactory(UserFactory)
    type = Notification.Type.ACCOUNT_ACTIVITY
    title = factory.Sequence(lambda n: f"Notification {n}")
    message = factory.Faker("sentence")

    class Params:
        # Read a while ago, so that a second "read" visibly keeps the first moment.
        read = factory.Trait(
            read_at=factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(days=3))
        )


class EmailLogFactory(factory.django.DjangoModelFactory):
    """An outbox row of the admin_message template, as queue_email writes it."""

    class Meta:
        model = EmailLog

    user = factory.SubFactory(UserFactory)
    to_email = factory.LazyAttribute(lambda email: email.user.email)
    from_email = "noreply@invoicegen.local"
    template_name = "admin_message"
    context = factory.LazyAttribute(
        lambda email: {"name": email.user.name, "title": email.subject, "message": "Hello."}
    )
    subject = factory.Sequence(lambda n: f"Admin message {n}")
    body_text = ""
    message_id = factory.Sequence(lambda n: f"<factory.{n}@invoicegen.local>")

    class Params:
        failed = factory.Trait(
            status=EmailLog.Status.FAILED,
            attempts=6,
            last_error="SMTPRecipientsRefused: {'x@example.com': (550, b'No such user')}",
        )
