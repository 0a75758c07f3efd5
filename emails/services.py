"""The email outbox, on core's outbox machinery (invoicegen/core/outbox.py): every email is an
EmailLog row first, in the caller's transaction; a Celery task sends it after commit; a sweeper
re-dispatches what a lost message or a killed worker left.

Templates are `templates/email/<name>.email` (django-templated-email: subject, plain and HTML
parts sharing one layout). Secrets (reset and verification links, download tokens) are never
stored: apps register a *link maker* for a template, called when the email is rendered for
sending, so the row holds only what is safe to keep.
"""

import re
import secrets
import smtplib
import socket
import time
from collections.abc import Callable
from email.utils import parseaddr

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template import Context
from django.utils import translation
from render_block import render_block_to_string
from templated_email import get_templated_mail

from audit import services as audit
from audit.context import clean_text
from audit.integrity import normalize_json
from emails import delivery, smtp, unsubscribe
from emails.models import DELIVERY_RANKS, DeliveryStatus, EmailLog
from invoicegen.core.outbox import Delivery, Outbox

LINK_PLACEHOLDER = "[link made when the email is sent]"
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
    with translation.override(email.language or settings.LANGUAGE_CODE):
        subject = render_block_to_string(
            _template(email), "subject", Context(context, autoescape=False)
        )
    return subject.strip("\n\r").replace("\n", " ").replace("\r", " ")[:255]


def render(email: EmailLog, *, with_secrets: bool) -> EmailMultiAlternatives:
    """The message, in its reader's language whatever the worker's."""
    with translation.override(email.language or settings.LANGUAGE_CODE):
        return _render(email, with_secrets=with_secrets)


def _render(email: EmailLog, *, with_secrets: bool) -> EmailMultiAlternatives:
    context = {"app_base_url": settings.APP_BASE_URL, **email.context}
    if email.template_name in _link_makers:
        keys, make = _link_makers[email.template_name]
        context |= make(email) if with_secrets else dict.fromkeys(keys, LINK_PLACEHOLDER)
    message = get_templated_mail(
        email.template_name,
        context,
        from_email=email.from_email,
        to=[email.to_email],
        headers={"Reply-To": email.reply_to} if email.reply_to else None,
    )
    message.extra_headers["Message-ID"] = email.message_id
    if with_secrets:  # the unsubscribe link is a capability, as the email's other links are
        message.extra_headers.update(unsubscribe.headers(email))
    return message


def new_message_id() -> str:
    """`<time.random@domain>` of FROM_EMAIL: random from the system (make_msgid's is the `random`
    module's, which a seeded process repeats), and short enough for one header line."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or socket.getfqdn()
    return f"<{time.time_ns() // 10_000_000}.{secrets.token_hex(10)}@{domain}>"


def queue_email(
    template_name: str,
    *,
    to: str,
    context: dict,
    user=None,
    notification=None,
    resource: tuple[str, object] | None = None,
    on_behalf_of=None,
    sender_name: str = "",
    topic: str = "",
    language: str = "",
) -> EmailLog:
    """Write the email to the outbox; it is sent once the caller's transaction commits (a
    rolled-back change leaves no row and sends nothing). `on_behalf_of`: the account an email
    to someone else is sent for (see `count_sent_on_behalf`); it comes from that account "via"
    the platform (named `sender_name`, or the account's name), and replies go to the account.
    `topic`: what its reader may unsubscribe from (emails/unsubscribe.py); none for an email
    that must reach them. `language`: its reader's (by default the user's, if it is to them);
    it is written and sent in it."""
    resource_type, resource_id = resource or ("", "")
    email = EmailLog(
        to_email=to,
        from_email=sender_for(on_behalf_of, sender_name),
        reply_to=on_behalf_of.email if on_behalf_of else "",
        template_name=template_name,
        context=normalize_json(context),
        message_id=new_message_id(),
        user=user,
        notification=notification,
        resource_type=resource_type,
        resource_id=str(resource_id),
        on_behalf_of=on_behalf_of,
        topic=topic,
        language=language or getattr(user, "language", ""),
    )
    email.subject = subject_of(email)
    return outbox.add(email)


_NOT_IN_A_NAME = re.compile(r'[@<>"\\]')


def sender_for(account, name: str = "") -> str:
    """FROM_EMAIL, named after the account an email goes out for (`name`, or the account's):
    `"Ada Lovelace via invoicegen" <billing@...>`. The address stays the platform's (its domain
    signs the mail); the name is one line, quoted, and short enough for the header and the
    column."""
    if account is None:
        return settings.DEFAULT_FROM_EMAIL
    # No address look-alike in the name ("support@bank.example via ..."), nothing to escape.
    name = _NOT_IN_A_NAME.sub(" ", clean_text(name or account.get_full_name(), 100)).strip()
    name = " ".join(name.split()) or f"A {settings.EMAIL_SENDER_NAME} user"
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]  # FROM_EMAIL may carry a name of its own
    return f'"{name} via {settings.EMAIL_SENDER_NAME}" <{address}>'


def count_sent_on_behalf(account, *, since) -> int:
    """How many emails to others were queued for the account since then (a sending quota)."""
    return EmailLog.objects.filter(on_behalf_of=account, created_at__gte=since).count()


def _hand_over(email_id: int) -> None:
    from emails.tasks import deliver_email

    deliver_email.delay(email_id=email_id)


outbox = Outbox(EmailLog, settings_prefix="EMAIL", hand_over=_hand_over)
pending_emails = outbox.pending
redispatch_pending = outbox.redispatch_pending
retry_delay = outbox.retry_delay


class Suppressed(Exception):
    """The address is on the suppression list: the email is not sent, and not tried again."""


class Unsubscribed(Suppressed):
    """The address unsubscribed from the sending account's emails of this topic."""


class Withdrawn(Exception):
    """What a link maker raises when what its email is about went away before the email was
    sent (its owner withdrew the document): the email is not sent, and not tried again."""


# A provider's answers that a retry cannot change (the message itself is refused); 401, 403
# and 404 (a rotated key, a domain not yet set up) are the account's, and fixed by its owner:
# the email waits for that and is retried.
PROVIDER_REFUSES_THE_MESSAGE = frozenset({400, 413, 415, 422})


def is_permanent(error: Exception) -> bool:
    """5xx replies are final, and so are a withdrawn or suppressed email, a provider refusing
    every recipient and a provider refusing the message itself; refused connections, timeouts,
    4xx replies and a provider's other answers are worth a retry."""
    if isinstance(error, Withdrawn | Suppressed | AnymailRecipientsRefused):
        return True
    if isinstance(error, AnymailAPIError):
        return error.status_code in PROVIDER_REFUSES_THE_MESSAGE
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


def _send(email: EmailLog) -> None:
    """Send through the configured backend (SMTP or a provider), unless the address is
    suppressed; keep the provider's id of the accepted message, which its events name. A
    recipient refused with a 5xx reply is a hard bounce."""
    if delivery.is_suppressed(email.to_email):
        suppressed = DELIVERY_RANKS[DeliveryStatus.SUPPRESSED]
        EmailLog.objects.filter(pk=email.pk).update(
            delivery_status=DeliveryStatus.SUPPRESSED, delivery_rank=suppressed
        )
        raise Suppressed(f"{email.to_email} is on the suppression list")
    if email.on_behalf_of_id and unsubscribe.is_opted_out(
        email.to_email, email.topic, sender=email.on_behalf_of_id
    ):
        unsubscribed = DELIVERY_RANKS[DeliveryStatus.UNSUBSCRIBED]
        EmailLog.objects.filter(pk=email.pk).update(
            delivery_status=DeliveryStatus.UNSUBSCRIBED, delivery_rank=unsubscribed
        )
        raise Unsubscribed(f"{email.to_email} unsubscribed from {email.topic}")
    message = render(email, with_secrets=True)
    try:
        smtp.send(message)
    except smtplib.SMTPRecipientsRefused as error:
        if is_permanent(error):
            _record_refusal(email, error)
        raise
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id is not None:
        provider_id = str(status.message_id)
        EmailLog.objects.filter(pk=email.pk).update(provider_message_id=provider_id)


def _record_refusal(email: EmailLog, error: smtplib.SMTPRecipientsRefused) -> None:
    code, reply = next(iter(error.recipients.values()))
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    delivery.record_delivery_event(
        delivery.DeliveryEvent(
            provider="smtp",
            event_id=f"{email.message_id}:{email.attempts}",
            status=DeliveryStatus.BOUNCED,
            recipient=email.to_email,
            description=f"{code} {text}",
            email_id=email.pk,
        )
    )


def _record_failure(email: EmailLog, reason: str) -> None:
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


def deliver_email(email_id: int, *, batch: int | None = None) -> Delivery:
    """Send one row, and other due rows along with it (EMAIL_SEND_BATCH), at most once each
    where that can be known (core's outbox); a permanent failure, or the last attempt's, is
    audited as `email.failed`."""
    return outbox.deliver(
        email_id,
        send=_send,
        is_permanent=is_permanent,
        on_failed=_record_failure,
        batch=batch or settings.EMAIL_SEND_BATCH,
    )


@transaction.atomic
def resend_email(email: EmailLog) -> EmailLog:
    """A new outbox row with the same template and context (fresh links, new Message-ID),
    from the same sender: one sent for an account stays the account's (its name, its replies,
    its quota, and the opt-outs of its clients, which stop the copy as they stop the first)."""
    copy = queue_email(
        email.template_name,
        to=email.to_email,
        context=email.context,
        user=email.user,
        notification=email.notification,
        resource=(email.resource_type, email.resource_id) if email.resource_type else None,
        on_behalf_of=email.on_behalf_of,
        topic=email.topic,
        language=email.language,
    )
    copy.from_email, copy.reply_to = email.from_email, email.reply_to
    EmailLog.objects.filter(pk=copy.pk).update(from_email=email.from_email, reply_to=email.reply_to)
    audit.log("admin.email_resent", target=("email", email.pk), metadata={"copy_id": copy.pk})
    return copy


@transaction.atomic
def retry_email(email: EmailLog) -> bool:
    """Put a failed row back in the queue now, keeping its Message-ID."""
    retried = outbox.retry_failed(email)
    if retried:
        audit.log("admin.email_retried", target=("email", email.pk))
    return retried
