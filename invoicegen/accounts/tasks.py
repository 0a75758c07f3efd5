from celery import shared_task

from invoicegen.accounts import services


@shared_task(ignore_result=True)
def purge_expired_auth_tokens() -> int:
    return services.delete_expired_auth_tokens()
