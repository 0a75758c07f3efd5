from celery import shared_task
from django.conf import settings
from django.utils import timezone

from audit import archive, partitions, retention, services


@shared_task(soft_time_limit=60, time_limit=90)  # a hanging checkpoint sink included
def seal_audit_log() -> int:
    sealed = 0
    while checkpoint := services.seal_audit_log():
        sealed += checkpoint.row_count
    return sealed


@shared_task
def cleanup_audit_logs() -> int:
    return retention.cleanup_audit_logs(days=settings.AUDIT_RETENTION_DAYS).deleted


@shared_task
def verify_recent_audit_log() -> bool:
    """This month and the last (the chain whole)."""
    this_month = partitions.month_of(timezone.now())
    return services.check_audit_log(since=partitions.month_after(this_month, -1)).ok


@shared_task(soft_time_limit=24 * 3600, time_limit=24 * 3600 + 300)
def verify_audit_log() -> bool:
    return services.check_audit_log(resume=True).ok


@shared_task
def add_audit_partitions() -> int:
    return partitions.add_partitions()[0]


@shared_task(soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300)  # a month of a large trail
def archive_audit_log() -> int:
    return len(archive.archive_ended_months())
