from celery import shared_task
from django.conf import settings

from emails import services

# The send has its own deadline (EMAIL_SEND_TIMEOUT); these catch anything else that hangs,
# and stay under the lease, so that no row is taken again while its task still runs.
SOFT_TIME_LIMIT = settings.EMAIL_SEND_TIMEOUT + 5
TIME_LIMIT = settings.EMAIL_SEND_TIMEOUT + 10


@shared_task(bind=True, ignore_result=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT)
def deliver_email(self, *, email_id: int) -> str | None:
    """Send one outbox row; a temporary failure comes back after its backoff, and a row whose
    lease another worker holds comes back when the lease ends (a worker killed mid-send). The
    row keeps its own schedule too, so the sweeper retries it if this message is lost."""
    delivery = services.deliver_email(email_id)
    if delivery.retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=delivery.retry_in, max_retries=None)
    return delivery.status


@shared_task(ignore_result=True)
def redispatch_pending_emails() -> int:
    return services.redispatch_pending()
