"""The service calls of the original description, for callers written against them. Each maps
onto today's functions; new code calls those directly (the domain's events, `notify()`,
`queue_email()`, `audit.services.log()`). They live here, in the domain, because they name
invoices, which the backbone does not."""

from audit import context as audit_context
from audit import services as audit
from audit.models import AuditLog
from emails import services as emails
from invoicegen.accounts.models import User
from invoicegen.billing.events import invoice_params
from notifications import services as notifications
from notifications import types


def _log_for_invoice(action: str, user_id: int, invoice_id: int, invoice_number: str):
    return audit.log(
        action,
        target=("invoice", invoice_id),
        actor=User.objects.get(pk=user_id),
        metadata={"invoice_number": invoice_number},
    )


class AuditService:
    log = staticmethod(audit.log)

    @staticmethod
    def log_user_login(user_id: int, ip_address: str | None = None, user_agent: str = ""):
        base = audit_context.current()
        context = audit_context.AuditContext(
            **{
                **base.to_headers(),
                "ip_address": audit_context.clean_ip(ip_address) or base.ip_address,
                "user_agent": audit_context.clean_text(user_agent, audit_context.MAX_USER_AGENT)
                or base.user_agent,
            }
        )
        user = User.objects.get(pk=user_id)
        return audit.log("user.login", target=user, actor=user, context=context)

    @staticmethod
    def log_invoice_created(user_id: int, invoice_id: int, invoice_number: str):
        return _log_for_invoice("invoice.created", user_id, invoice_id, invoice_number)

    @staticmethod
    def log_invoice_finalized(user_id: int, invoice_id: int, invoice_number: str):
        return _log_for_invoice("invoice.finalized", user_id, invoice_id, invoice_number)

    @staticmethod
    def log_invoice_sent(user_id: int, invoice_id: int, invoice_number: str):
        return _log_for_invoice("invoice.sent", user_id, invoice_id, invoice_number)

    @staticmethod
    def log_invoice_paid(user_id: int, invoice_id: int, invoice_number: str):
        return _log_for_invoice("invoice.paid", user_id, invoice_id, invoice_number)

    @staticmethod
    def get_user_logs(user_id: int):
        return AuditLog.objects.filter(user_id=user_id)

    @staticmethod
    def get_resource_logs(resource_type: str, resource_id):
        return AuditLog.objects.filter(resource_type=resource_type, resource_id=str(resource_id))


class NotificationService:
    @staticmethod
    def create_notification(
        user_id: int,
        notification_type: str,
        title: str,
        message: str = "",
        resource_type: str | None = None,
        resource_id=None,
        metadata: dict | None = None,
        send_email: bool = False,
    ):
        """A notification with the given text (kept as its parameters `title` and `message`)."""
        return notifications.notify(
            User.objects.get(pk=user_id),
            notification_type,
            params={**(metadata or {}), "title": title, "message": message},
            resource=(resource_type, resource_id) if resource_type else None,
            channels=(types.IN_APP, types.EMAIL) if send_email else (types.IN_APP,),
        )

    @staticmethod
    def notify_invoice_finalized(invoice):
        params = invoice_params(invoice)
        return notifications.notify(
            invoice.user, "invoice_finalized", params=params, resource=invoice
        )

    mark_read = staticmethod(notifications.mark_read)
    mark_all_read = staticmethod(notifications.mark_all_read)
    unread_count = staticmethod(notifications.unread_count)


class EmailService:
    queue_email = staticmethod(emails.queue_email)

    @staticmethod
    def send_invoice_notification(user, invoice, notification_type: str, client_email=None):
        """The owner's email about an invoice event and, if `client_email`, the client's."""
        context = {
            **invoice_params(invoice),
            "name": user.get_short_name(),
            "issuer": user.get_full_name(),
            "event": notification_type,
            "due_date": invoice.due_date,
        }
        resource = ("invoice", invoice.pk)
        sent = [
            emails.queue_email(
                "invoice_notification_user",
                to=user.email,
                context=context,
                user=user,
                resource=resource,
                topic=notification_type,
            )
        ]
        if client_email:
            sent.append(
                emails.queue_email(
                    "invoice_notification_client",
                    to=client_email,
                    context=context,
                    resource=resource,
                    on_behalf_of=user,
                    language=invoice.client_language,
                )
            )
        return sent
