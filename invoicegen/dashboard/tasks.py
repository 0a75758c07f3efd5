from celery import shared_task

from invoicegen.dashboard import services


@shared_task(ignore_result=True)
def count_audit_days() -> int:
    return len(services.count_audit_days())
