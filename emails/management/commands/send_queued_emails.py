from emails import services
from invoicegen.core.outbox_command import SendQueuedCommand


class Command(SendQueuedCommand):
    help = (
        "Send the emails that are due (queued, or stuck in sending past their lease), here and "
        "now; with --dispatch, hand them to the Celery workers instead."
    )
    outbox = services.outbox
    noun = "email(s)"

    def deliver(self, row_id):
        return services.deliver_email(row_id, batch=1)
