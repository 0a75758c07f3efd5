"""Sending templated emails (templates/email/<name>.email: subject, plain-text and HTML parts)."""

from functools import partial

from django.conf import settings
from django.db import transaction

from emails.tasks import send_templated_email_task


def queue_templated_email(template_name: str, *, to: str, context: dict) -> None:
    """Send the email once the caller's transaction commits: a rolled-back change sends nothing."""
    context = {"app_base_url": settings.APP_BASE_URL, **context}
    transaction.on_commit(
        partial(
            send_templated_email_task.delay, template_name=template_name, to=to, context=context
        )
    )
