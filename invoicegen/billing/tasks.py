from celery import shared_task

from invoicegen.billing import services


@shared_task
def expire_subscriptions() -> int:
    return services.expire_subscriptions()


@shared_task
def send_due_reminders() -> int:
    return services.send_due_reminders()
