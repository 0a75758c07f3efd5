from celery import shared_task

from emails import services


@shared_task(bind=True, ignore_result=True)
def deliver_email(self, *, email_id: int) -> str | None:
    """Send one outbox row; a temporary failure comes back after its backoff. The row keeps
    its own schedule too, so the sweeper retries it if this message is lost."""
    delivery = services.deliver_email(email_id)
    if delivery.retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=delivery.retry_in, max_retries=None)
    return delivery.status


@shared_task(ignore_result=True)
def redispatch_pending_emails() -> int:
    return services.redispatch_pending()
