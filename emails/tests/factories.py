import factory

from emails.models import EmailLog, EmailSuppression
from invoicegen.accounts.tests.factories import UserFactory


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
    message_id = factory.Sequence(lambda n: f"<factory.{n}@invoicegen.local>")

    class Params:
        failed = factory.Trait(
            status=EmailLog.Status.FAILED,
            attempts=6,
            last_error="SMTPRecipientsRefused: {'x@example.com': (550, b'No such user')}",
        )


class EmailSuppressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EmailSuppression

    address = factory.Sequence(lambda n: f"gone{n}@example.com")
    reason = EmailSuppression.Reason.BOUNCED
    source = "postmark"
    description = "mailbox unavailable"
