from celery import shared_task
from django.conf import settings

from invoicegen.core.outbox import run_delivery
from webhooks import services

# Each send has its own deadline (WEBHOOK_TIMEOUT), and no send of a batch starts after
# WEBHOOK_SEND_BATCH_SECONDS; these catch anything else that hangs, and stay under the lease.
SOFT_TIME_LIMIT = settings.WEBHOOK_TIMEOUT + settings.WEBHOOK_SEND_BATCH_SECONDS + 5
TIME_LIMIT = SOFT_TIME_LIMIT + 5


@shared_task(bind=True, ignore_result=True, soft_time_limit=SOFT_TIME_LIMIT, time_limit=TIME_LIMIT)
def deliver_webhook(self, *, delivery_id: int) -> str | None:
    """Send one delivery row (retries as core's outbox says)."""
    return run_delivery(self, services.deliver_webhook(delivery_id))


@shared_task(ignore_result=True)
def redispatch_pending_webhooks() -> int:
    return services.redispatch_pending()


@shared_task(ignore_result=True)
def purge_old_webhook_deliveries() -> int:
    return services.purge_old_deliveries()
