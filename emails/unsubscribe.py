"""One-click unsubscribe (RFC 8058 and RFC 2369).

An email that may be refused carries a *topic* (`EmailLog.topic`; empty for what must reach its
reader: an account's security, a document itself). Its `List-Unsubscribe` header names a URL
holding a signed token, and a mailto for mail clients that prefer one; a POST to the URL, with no
session and no CSRF token (a mail provider posts it), stops that topic:
- an *account's own* emails (its notifications, its digests): the app that sends them stops
  them (`register_account_topics`: the notifications app switches the type's email channel off);
- an email sent *for an account to someone else* (a reminder to an issuer's client): the
  address opts out of that account's emails of the topic (`EmailOptOut`), and of no one else's.
The token names the account, or the address and the account it was sent for, and the topic;
Django's signing makes it unforgeable, so nothing in it is a guessable id.
"""

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import transaction
from django.urls import reverse

from audit import services as audit
from emails.delivery import normalize_address
from emails.models import EmailLog, EmailOptOut

SALT = "emails.unsubscribe"

# The app that sends accounts their own emails (notifications) says what a topic is called
# (`label(topic)`, None when it cannot be unsubscribed from) and stops it (`stop(user, topic)`,
# whether anything changed).
_account_topics: dict[str, Callable] = {}
# topic -> its label, for the emails accounts send to others.
_sender_topics: dict[str, str] = {}


def register_account_topics(*, label: Callable[[str], str | None], stop: Callable) -> None:
    _account_topics.update(label=label, stop=stop)


def register_sender_topic(topic: str, *, label: str) -> None:
    _sender_topics[topic] = label


class InvalidToken(Exception):
    """Not a token of ours: tampered with, cut short, or signed for something else."""


class UnknownRecipient(Exception):
    """A true token whose account (or the account it was sent for) no longer exists."""


@dataclass(frozen=True)
class UnsubscribeRequest:
    """What a token asks to stop: `user`'s emails of `topic`, or the emails of `topic` that
    `sender` sends to `address`."""

    topic: str
    label: str
    user: object | None = None
    address: str = ""
    sender: object | None = None
    sender_name: str = ""
    language: str = ""


def token_for(email: EmailLog) -> str | None:
    """The token of an email's unsubscribe link; None when it cannot be unsubscribed from."""
    if not email.topic:
        return None
    if email.topic in _sender_topics and email.on_behalf_of_id:
        address = normalize_address(email.to_email)
        # The name it came from ("Studio North", of "Studio North via invoicegen"): its page
        # names the sender as the email did.
        name = parseaddr(email.from_email)[0].removesuffix(f" via {settings.EMAIL_SENDER_NAME}")
        payload = {"t": email.topic, "a": address, "s": email.on_behalf_of_id, "n": name}
    elif _account_topics and email.user_id and _account_topics["label"](email.topic):
        payload = {"t": email.topic, "u": email.user_id}
    else:
        return None
    if email.language:
        payload["l"] = email.language  # its page speaks the email's language
    return signing.dumps(payload, salt=SALT, compress=True)


def headers(email: EmailLog) -> dict[str, str]:
    """`List-Unsubscribe` (the one-click URL, then a mailto) and `List-Unsubscribe-Post`."""
    token = token_for(email)
    if token is None:
        return {}
    url = settings.APP_BASE_URL.rstrip("/") + reverse("unsubscribe", args=[f"{token}/"])
    mailto = f"mailto:{settings.EMAIL_UNSUBSCRIBE_ADDRESS}?subject={quote('unsubscribe ' + token)}"
    return {
        "List-Unsubscribe": f"<{url}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def is_signed(token: str) -> bool:
    """Whether the token is one of ours (signed here, for this), whatever it names."""
    try:
        signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return False
    return True


def read_token(token: str) -> UnsubscribeRequest:
    """What the token asks to stop. Raises InvalidToken or UnknownRecipient."""
    try:
        payload = signing.loads(token, salt=SALT)
        topic = payload["t"]
        language = payload.get("l", "")
        if "u" in payload:
            label = _account_topics["label"](topic) if _account_topics else None
            user_id, address, sender_id = payload["u"], "", None
        else:
            label = _sender_topics.get(topic)
            user_id, address, sender_id = None, payload["a"], payload["s"]
    except (signing.BadSignature, KeyError, TypeError, ValueError) as error:
        raise InvalidToken(type(error).__name__) from error
    if label is None or type(user_id or sender_id) is not int or not isinstance(address, str):
        raise InvalidToken("no such topic")
    if not isinstance(language, str) or language not in dict(settings.LANGUAGES):
        language = ""
    account = get_user_model().objects.filter(pk=user_id or sender_id).first()
    if account is None:
        raise UnknownRecipient
    if user_id:
        return UnsubscribeRequest(topic, label, user=account, language=language)
    name = payload.get("n")
    return UnsubscribeRequest(
        topic,
        label,
        address=address,
        sender=account,
        sender_name=name
        if isinstance(name, str) and name
        else account.get_full_name() or account.email,
        language=language,
    )


@transaction.atomic
def unsubscribe(request: UnsubscribeRequest) -> bool:
    """Stop what the token named, audited; False when it was stopped already."""
    if request.user is not None:
        changed = _account_topics["stop"](request.user, request.topic)
        target, who = ("user", request.user.pk), request.user.email
    else:
        opt_out, changed = EmailOptOut.objects.get_or_create(
            address=request.address, topic=request.topic, sender=request.sender
        )
        target, who = ("email_opt_out", opt_out.pk), request.address
    if changed:
        audit.log(
            "email.unsubscribed",
            actor=request.user,
            target=target,
            metadata={
                "address": who,
                "topic": request.topic,
                "sender_id": request.sender.pk if request.sender else None,
            },
        )
    return changed


def is_opted_out(address: str, topic: str, *, sender) -> bool:
    """Whether the address opted out of `sender`'s emails of this topic."""
    return EmailOptOut.objects.filter(
        address=normalize_address(address), topic=topic, sender=sender
    ).exists()
