from celery import shared_task
from django.conf import settings

from emails import services
from invoicegen.core.outbox import run_delivery

# Each send has its own deadline (EMAIL_SEND_TIMEOUT), and no send of a batch starts after
# EMAIL_SEND_BATCH_SECONDS; these catch anything else that hangs, and stay under the lease, so
# that no row is taken again while its task still runs.
SOFT_TIME_LIMIT = settings.EMAIL_SEND_TIMEOUT + settings.EMAIL_SEND_BATCH_SECONDS + 5
TIME_LIMIT = SOFT_TIME_LIMIT + 5


@shared_task(bind=True, ignore_result=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT)
def deliver_email(self, *, email_id: int) -> str | None:
    """Send one outbox row (retries as core's outbox says)."""
    return run_delivery(self, services.deliver_email(email_id))


@shared_task(ignore_result=True)
def redispatch_pending_emails() -> int:
    return services.redispatch_pending()
