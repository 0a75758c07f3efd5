from celery import shared_task

from downloads import services


@shared_task(ignore_result=True)
def purge_expired_tokens() -> int:
    return services.purge_expired_tokens()
