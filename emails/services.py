"""The outbox: every email is an EmailLog row first, in the caller's transaction; a Celery task
sends it after commit; a sweeper re-dispatches what a lost message or a killed worker left.

Templates are `templates/email/<name>.email` (django-templated-email: subject, plain and HTML
parts sharing one layout). Secrets (reset and verification links, download tokens) are never
stored: apps register a *link maker* for a template, called when the email is rendered for
sending, so the row holds only what is safe to keep.
"""

import logging
import random
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import make_msgid
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.template import Context
from django.utils import timezone
from redis.exceptions import RedisError
from render_block import render_block_to_string
from templated_email import get_templated_mail

from audit import services as audit
from audit.integrity import normalize_json
from emails import smtp
from emails.models import EmailLog

logger = logging.getLogger(__name__)

LINK_PLACEHOLDER = "[link made when the email is sent]"
# How long a server's acceptance is remembered, in case its "sent" is lost: far longer than
# any outage of the database that a lease's retry would meet.
ACCEPTANCE_MEMORY_SECONDS = 24 * 3600
# template name -> (the context keys it makes, function(email row) -> those values)
_link_makers: dict[str, tuple[tuple[str, ...], Callable]] = {}


def register_link_maker(template_name: str, *, keys: tuple[str, ...], make: Callable) -> None:
    """`make(email)` returns the secret links `keys` of an email, when it is sent."""
    _link_makers[template_name] = (keys, make)


def _template(email: EmailLog) -> str:
    return (
        f"{settings.TEMPLATED_EMAIL_TEMPLATE_DIR}{email.template_name}"
        f".{settings.TEMPLATED_EMAIL_FILE_EXTENSION}"
    )


def subject_of(email: EmailLog) -> str:
    """The subject block alone (cleaned as django-templated-email does): queueing an email
    renders no more than the outbox row keeps."""
    context = {"app_base_url": settings.APP_BASE_URL, **email.context}
    subject = render_block_to_string(
        _template(email), "subject", Context(context, autoescape=False)
    )
    return subject.strip("\n\r").replace("\n", " ").replace("\r", " ")[:255]


def render(email: EmailLog, *, with_secrets: bool) -> EmailMultiAlternatives:
    context = {"app_base_url": settings.APP_BASE_URL, **email.context}
    if email.template_name in _link_makers:
        keys, make = _link_makers[email.template_name]
        context |= make(email) if with_secrets else dict.fromkeys(keys, LINK_PLACEHOLDER)
    message = get_templated_mail(
        email.template_name, context, from_email=email.from_email, to=[email.to_email]
    )
    message.extra_headers["Message-ID"] = email.message_id
    return message


def queue_email(
    template_name: str,
    *,
    to: str,
    context: dict,
    user=None,
    notification=None,
    resource: tuple[str, object] | None = None,
    on_behalf_of=None,
) -> EmailLog:
    """Write the email to the outbox; it is sent once the caller's transaction commits (a
    rolled-back change leaves no row and sends nothing). `on_behalf_of`: the account an email
    to someone else is sent for (see `count_sent_on_behalf`)."""
    resource_type, resource_id = resource or ("", "")
    email = EmailLog(
        to_email=to,
        from_email=settings.DEFAULT_FROM_EMAIL,
        template_name=template_name,
        context=normalize_json(context),
        message_id=make_msgid(domain=settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or None),
        user=user,
        notification=notification,
        resource_type=resource_type,
        resource_id=str(resource_id),
        on_behalf_of=on_behalf_of,
    )
    email.subject = subject_of(email)
    email.save()
    transaction.on_commit(partial(dispatch, email.pk))
    return email


def count_sent_on_behalf(account, *, since) -> int:
    """How many emails to others were queued for the account since then (a sending quota)."""
    return EmailLog.objects.filter(on_behalf_of=account, created_at__gte=since).count()


def dispatch(email_id: int) -> None:
    """Hand the email to a worker. A broker that is down loses nothing: the row is queued and
    the sweeper sends it later."""
    from emails.tasks import deliver_email

    try:
        deliver_email.delay(email_id=email_id)
    except Exception:  # the broker's errors are many; the request must not fail for any
        logger.warning("email %s not dispatched (broker unavailable); the sweeper will", email_id)


_CLAIM_SQL = f"""
    UPDATE {EmailLog._meta.db_table}
    SET status = 'sending', claimed_at = %(now)s, attempts = attempts + 1
    WHERE id = %(id)s AND (
        (status = 'queued' AND next_attempt_at <= %(now)s)
        OR (status = 'sending' AND claimed_at < %(lease_over)s)
    )
    RETURNING *
"""  # noqa: S608 (a table name)


def _claim(email_id: int) -> EmailLog | None:
    """Take the row for sending in one atomic statement: two workers, or a message delivered
    twice, never send one row twice. A row stuck in `sending` past its lease (a killed
    worker) is free again. Times are the application's clock, like next_attempt_at."""
    now = timezone.now()
    lease_over = now - _seconds(settings.EMAIL_SENDING_LEASE_SECONDS)
    params = {"id": email_id, "now": now, "lease_over": lease_over}
    return next(iter(EmailLog.objects.raw(_CLAIM_SQL, params)), None)


def _seconds(seconds: float):
    return timezone.timedelta(seconds=seconds)


def is_permanent(error: Exception) -> bool:
    """5xx replies are final; refused connections, timeouts and 4xx replies are worth a retry."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


def retry_delay(attempts: int) -> float:
    """Exponential backoff with jitter, so that a recovering server is not hit all at once."""
    base = settings.EMAIL_RETRY_BASE_SECONDS * 2 ** (attempts - 1)
    return min(base, settings.EMAIL_RETRY_MAX_SECONDS) * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class Delivery:
    status: str | None  # None: someone else has the row, or it is not due
    retry_in: float | None = None


def deliver_email(email_id: int) -> Delivery:
    """Send one row at most once where that can be known: the claim keeps two workers apart,
    and the server's acceptance is remembered in the cache before the row is marked sent, so
    that when that mark is lost (the database gone or hanging right after the server took the
    message) the lease's retry marks the row sent instead of sending it again."""
    email = _claim(email_id)
    if email is None:
        return Delivery(None, retry_in=_lease_left(email_id))
    if email.attempts > 1 and _accepted_before(email):
        return _mark_sent(email)
    try:
        smtp.send(render(email, with_secrets=True))
    except Exception as error:  # SMTP, socket and template errors all end the same way
        return _record_failure(email, error)
    _remember_acceptance(email)
    return _mark_sent(email)


def _lease_left(email_id: int) -> float | None:
    """Seconds until the lease of a row another worker holds runs out: a worker killed
    mid-send leaves it `sending`, and its redelivered task comes back then, not a sweep later."""
    claimed_at = (
        EmailLog.objects.filter(pk=email_id, status=EmailLog.Status.SENDING)
        .values_list("claimed_at", flat=True)
        .first()
    )
    if claimed_at is None:
        return None
    lease_end = claimed_at + _seconds(settings.EMAIL_SENDING_LEASE_SECONDS)
    return max((lease_end - timezone.now()).total_seconds(), 0) + 1


def _held(email: EmailLog):
    """The row, as long as this delivery still holds its claim: one that outlived its lease
    (a hang no time limit ended) must not overwrite what the next delivery did."""
    return EmailLog.objects.filter(
        pk=email.pk, status=EmailLog.Status.SENDING, claimed_at=email.claimed_at
    )


def _let_go(email: EmailLog) -> Delivery:
    logger.warning("email %s was taken back before this delivery of it ended", email.pk)
    return Delivery(None)


def _mark_sent(email: EmailLog) -> Delivery:
    if not _held(email).update(status=EmailLog.Status.SENT, sent_at=Now(), last_error=""):
        return _let_go(email)
    return Delivery(EmailLog.Status.SENT)


def _acceptance_key(email: EmailLog) -> str:
    return f"emails:accepted:{email.message_id}"


def _remember_acceptance(email: EmailLog) -> None:
    try:
        cache.set(_acceptance_key(email), True, timeout=ACCEPTANCE_MEMORY_SECONDS)
    except (RedisError, OSError):  # if its "sent" is lost too, the lease sends it again
        logger.warning("email %s accepted; the cache is unavailable to remember it", email.pk)


def _accepted_before(email: EmailLog) -> bool:
    try:
        return bool(cache.get(_acceptance_key(email)))
    except (RedisError, OSError):  # no cache: send again rather than lose the email
        logger.warning("email %s: the cache is unavailable to say whether it went", email.pk)
        return False


def _record_failure(email: EmailLog, error: Exception) -> Delivery:
    reason = f"{type(error).__name__}: {error}"[:2000]
    if is_permanent(error) or email.attempts >= settings.EMAIL_MAX_ATTEMPTS:
        with transaction.atomic():
            if not _held(email).update(status=EmailLog.Status.FAILED, last_error=reason):
                return _let_go(email)
            audit.log(
                "email.failed",
                target=("email", email.pk),
                metadata={
                    "to": email.to_email,
                    "template": email.template_name,
                    "attempts": email.attempts,
                    "reason": reason,
                },
                success=False,
            )
        return Delivery(EmailLog.Status.FAILED)
    delay = retry_delay(email.attempts)
    queued = _held(email).update(
        status=EmailLog.Status.QUEUED,
        next_attempt_at=timezone.now() + _seconds(delay),
        last_error=reason,
    )
    if not queued:
        return _let_go(email)
    return Delivery(EmailLog.Status.QUEUED, retry_in=delay)


def pending_emails():
    """Rows due for a (re)try, and rows stuck in `sending` past their lease."""
    lease_over = timezone.now() - _seconds(settings.EMAIL_SENDING_LEASE_SECONDS)
    return EmailLog.objects.filter(
        Q(status=EmailLog.Status.QUEUED, next_attempt_at__lte=timezone.now())
        | Q(status=EmailLog.Status.SENDING, claimed_at__lt=lease_over)
    ).order_by("id")


def redispatch_pending(*, limit: int = 1000) -> int:
    """The sweeper: hand every pending row to a worker again (a claim makes duplicates safe)."""
    ids = list(pending_emails().values_list("pk", flat=True)[:limit])
    for email_id in ids:
        dispatch(email_id)
    return len(ids)


@transaction.atomic
def resend_email(email: EmailLog) -> EmailLog:
    """A new outbox row with the same template and context (fresh links, new Message-ID)."""
    copy = queue_email(
        email.template_name,
        to=email.to_email,
        context=email.context,
        user=email.user,
        notification=email.notification,
        resource=(email.resource_type, email.resource_id) if email.resource_type else None,
    )  # staff resending, not the account: it counts against no account's quota
    audit.log("admin.email_resent", target=("email", email.pk), metadata={"copy_id": copy.pk})
    return copy


@transaction.atomic
def retry_email(email: EmailLog) -> bool:
    """Put a failed row back in the queue now, keeping its Message-ID."""
    updated = EmailLog.objects.filter(pk=email.pk, status=EmailLog.Status.FAILED).update(
        status=EmailLog.Status.QUEUED, next_attempt_at=timezone.now(), attempts=0
    )
    if updated:
        audit.log("admin.email_retried", target=("email", email.pk))
        transaction.on_commit(partial(dispatch, email.pk))
    return bool(updated)


def send_invoice_notification(
    user, invoice, notification_type: str, client_email: str | None = None, *, notification=None
) -> list[EmailLog]:
    """The owner's email about an invoice event and, for a sent invoice, the client's email
    (its download link is made when it is sent). Returns the outbox rows."""
    context = {
        "name": user.get_short_name(),
        "issuer": user.get_full_name(),
        "event": notification_type,
        "invoice_id": invoice.pk,
        "invoice_number": invoice.number,
        "client_name": invoice.client_name,
        "total": f"{invoice.total} {invoice.currency}",
        "due_date": invoice.due_date,
    }
    resource = ("invoice", invoice.pk)
    emails = [
        queue_email(
            "invoice_notification_user",
            to=user.email,
            context=context,
            user=user,
            notification=notification,
            resource=resource,
        )
    ]
    if client_email:
        emails.append(
            queue_email(
                "invoice_notification_client",
                to=client_email,
                context=context,
                resource=resource,
                on_behalf_of=user,
            )
        )
    return emails


class EmailService:
    """The seed's calls, for callers written against it."""

    queue_email = staticmethod(queue_email)
    send_invoice_notification = staticmethod(send_invoice_notification)
    resend_email = staticmethod(resend_email)
    retry_email = staticmethod(retry_email)
