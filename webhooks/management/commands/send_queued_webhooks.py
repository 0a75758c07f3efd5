from invoicegen.core.outbox_command import SendQueuedCommand
from webhooks import services


class Command(SendQueuedCommand):
    help = (
        "Send the webhook deliveries that are due (queued, or stuck in sending past their "
        "lease), here and now; with --dispatch, hand them to the Celery workers instead."
    )
    outbox = services.outbox
    noun = "webhook delivery(ies)"

    def deliver(self, row_id):
        return services.deliver_webhook(row_id, batch=1)
