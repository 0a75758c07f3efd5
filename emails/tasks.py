from celery import shared_task
from django.conf import settings
from templated_email import send_templated_mail


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_templated_email_task(*, template_name: str, to: str, context: dict) -> None:
    send_templated_mail(
        template_name=template_name,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[to],
        context=context,
    )
