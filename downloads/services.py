"""Secure downloads: issuing links, redeeming them atomically, revoking and purging them.

`downloads` knows nothing of what it serves: an app registers, per resource type, how to
describe the resource on the landing page, how to render the file, and what to do when a link
to it is viewed or downloaded (in its ready()).
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from audit import context as audit_context
from audit import services as audit
from downloads import tokens
from downloads.models import DownloadEvent, SecureDownloadToken

Reason = DownloadEvent.Reason
Kind = DownloadEvent.Kind
# A person reading a page for a while, or coming back to it, is one view.
VIEW_WINDOW = datetime.timedelta(minutes=30)
_PREVIEW_SALT = "downloads.services.owner_preview"


def _nothing(resource_id: str) -> None:
    return None


@dataclass(frozen=True)
class Resource:
    # resource id -> what the landing page shows: its title, fields, and language (the page's)
    describe: Callable[[str], dict]
    render: Callable[[str], tuple[str, bytes]]  # resource id -> (file name, PDF bytes)
    # Called in the transaction that records a counted view / a granted download.
    on_viewed: Callable[[str], None] = _nothing
    on_downloaded: Callable[[str], None] = _nothing


_resources: dict[str, Resource] = {}


def register_resource(
    resource_type: str, *, describe, render, on_viewed=_nothing, on_downloaded=_nothing
) -> None:
    _resources[resource_type] = Resource(describe, render, on_viewed, on_downloaded)


def resource_of(token: SecureDownloadToken) -> Resource:
    return _resources[token.resource_type]


class DownloadDenied(Exception):
    def __init__(self, reason: str, token: SecureDownloadToken | None = None):
        super().__init__(reason)
        self.reason = reason
        self.token = token


def link_url(raw: str) -> str:
    return f"{settings.APP_BASE_URL}/downloads/{raw}/"


def preview_url(token: SecureDownloadToken, raw: str) -> str:
    """The link for its owner: the same page, marked as the owner's preview so that opening it
    counts no view. The mark is the token's id signed under SECRET_KEY: it opens nothing by
    itself, and fits no other link."""
    mark = signing.Signer(salt=_PREVIEW_SALT).sign(str(token.pk)).rsplit(":", 1)[1]
    return f"{link_url(raw)}?preview={mark}"


def is_owner_preview(token: SecureDownloadToken, *, user, preview: str) -> bool:
    """Whether the link's page is opened by its owner: signed in as the link's creator, or
    through the link's preview_url."""
    if user is not None and user.is_authenticated and user.pk == token.created_by_id:
        return True
    signed = f"{token.pk}:{preview}"
    try:
        return bool(preview) and signing.Signer(salt=_PREVIEW_SALT).unsign(signed) == str(token.pk)
    except signing.BadSignature:
        return False


@transaction.atomic
def issue_download_token(
    resource_type: str,
    resource_id,
    *,
    created_by=None,
    expires_in_hours: int | None = None,
    max_downloads: int | None = None,
) -> tuple[SecureDownloadToken, str]:
    """A new random link; returns the token and its raw value, which exists nowhere else."""
    raw, token_hash = tokens.new_token()
    token = _create_token(
        token_hash,
        resource_type,
        resource_id,
        created_by=created_by,
        expires_in_hours=expires_in_hours,
        max_downloads=max_downloads,
    )
    return token, raw


@transaction.atomic
def issue_email_download_token(
    resource_type: str, resource_id, *, email, created_by=None
) -> tuple[SecureDownloadToken, str]:
    """The link that goes out in `email`, the same at each rendering of that email: made (and
    audited) at the first, found again by its hash at every retry, so the copy a client may
    already have keeps working. Making it withdraws the unused links that earlier emails of the
    same kind gave the same address for the same resource (a new sending supersedes them); a
    link the client already used stays valid, and later emails' links are not touched."""
    raw, token_hash = tokens.email_token(email.message_id)
    token = SecureDownloadToken.objects.filter(token_hash=token_hash).first()
    if token is None:
        token = _create_token(
            token_hash, resource_type, resource_id, created_by=created_by, email=email
        )
        superseded = SecureDownloadToken.objects.filter(
            resource_type=resource_type,
            resource_id=str(resource_id),
            email__template_name=email.template_name,
            email__to_email=email.to_email,
            email__pk__lt=email.pk,
            download_count=0,
            revoked_at__isnull=True,
        )
        for earlier in superseded:
            revoke_token(earlier)
    return token, raw


def _create_token(
    token_hash: str,
    resource_type: str,
    resource_id,
    *,
    created_by,
    expires_in_hours: int | None = None,
    max_downloads: int | None = None,
    email=None,
) -> SecureDownloadToken:
    hours = expires_in_hours or settings.DOWNLOAD_TOKEN_TTL_HOURS
    token = SecureDownloadToken.objects.create(
        token_hash=token_hash,
        resource_type=resource_type,
        resource_id=str(resource_id),
        created_by=created_by,
        email=email,
        expires_at=timezone.now() + datetime.timedelta(hours=hours),
        max_downloads=max_downloads or settings.DOWNLOAD_TOKEN_MAX_DOWNLOADS,
    )
    audit.log(
        "download.link_created",
        target=(resource_type, resource_id),
        metadata={
            "token_id": token.pk,
            "expires_at": token.expires_at,
            "max_downloads": token.max_downloads,
            "email_id": getattr(email, "pk", None),
        },
    )
    return token


def _find(raw: str) -> SecureDownloadToken | None:
    token = SecureDownloadToken.objects.filter(token_hash=tokens.hash_token(raw)).first()
    return token if token is not None and tokens.matches(raw, token.token_hash) else None


def _why_unusable(token: SecureDownloadToken) -> str | None:
    if token.revoked_at is not None:
        return Reason.REVOKED
    if token.expires_at <= timezone.now():
        return Reason.EXPIRED
    if token.download_count >= token.max_downloads:
        return Reason.EXHAUSTED
    return None


def inspect_token(raw: str) -> SecureDownloadToken:
    """The token behind a link, for its landing page; consumes nothing."""
    token = _find(raw)
    if token is None:
        raise DownloadDenied(Reason.UNKNOWN)
    reason = _why_unusable(token)
    if reason:
        raise DownloadDenied(reason, token)
    return token


@transaction.atomic
def record_view(token: SecureDownloadToken) -> DownloadEvent | None:
    """Count a person's view of a link's page (the caller has ruled out its owner and link
    scanners): a `viewed` event and its `download.viewed` entry, unless the link already has a
    view counted within VIEW_WINDOW; returns the event, or None when it did not count. The
    token's row is locked first, so of two views racing only one counts."""
    token = SecureDownloadToken.objects.select_for_update().get(pk=token.pk)
    recent = timezone.now() - VIEW_WINDOW
    if token.events.filter(kind=Kind.VIEWED, created_at__gt=recent).exists():
        return None
    context = audit_context.current()
    event = DownloadEvent.objects.create(
        token=token,
        kind=Kind.VIEWED,
        granted=True,
        reason=Reason.GRANTED,
        ip_address=context.ip_address,
        user_agent=context.user_agent,
    )
    audit.log(
        "download.viewed",
        target=(token.resource_type, token.resource_id),
        metadata={"token_id": token.pk},
    )
    resource_of(token).on_viewed(token.resource_id)
    return event


def redeem_token(raw: str) -> SecureDownloadToken:
    """Use one download. One conditional UPDATE decides (not revoked, not expired by the
    database clock, below the limit), so the Nth of N racing requests wins and the N+1th
    loses. Every attempt is recorded, granted or denied."""
    token = _find(raw)
    granted = token is not None and bool(
        SecureDownloadToken.objects.filter(
            pk=token.pk,
            revoked_at__isnull=True,
            expires_at__gt=Now(),
            download_count__lt=F("max_downloads"),
        ).update(download_count=F("download_count") + 1)
    )
    if granted:
        token.refresh_from_db(fields=["download_count"])
        _record(token, Reason.GRANTED)
        return token
    reason = Reason.UNKNOWN if token is None else _why_unusable(token) or Reason.EXHAUSTED
    _record(token, reason)
    raise DownloadDenied(reason, token)


def _record(token: SecureDownloadToken | None, reason: str) -> None:
    context = audit_context.current()
    granted = reason == Reason.GRANTED
    with transaction.atomic():
        DownloadEvent.objects.create(
            token=token,
            granted=granted,
            reason=reason,
            ip_address=context.ip_address,
            user_agent=context.user_agent,
        )
        audit.log(
            "download.succeeded" if granted else "download.denied",
            target=(token.resource_type, token.resource_id) if token else ("download", ""),
            metadata={
                "token_id": getattr(token, "pk", None),
                "reason": reason,
                "downloads_left": token.downloads_left if token else None,
            },
            success=granted,
        )
        if granted:
            resource_of(token).on_downloaded(token.resource_id)


@transaction.atomic
def revoke_token(token: SecureDownloadToken) -> SecureDownloadToken:
    _revoke([token.pk], reason="")
    token.refresh_from_db(fields=["revoked_at", "revoked_reason"])
    return token


@transaction.atomic
def revoke_resource_tokens(resource_type: str, resource_id, *, reason: str) -> int:
    """Withdraw every link to a resource that its owner no longer serves; `reason` is what
    the links' page says, in the owner's words."""
    links = SecureDownloadToken.objects.filter(
        resource_type=resource_type, resource_id=str(resource_id), revoked_at__isnull=True
    )
    return _revoke(list(links.values_list("pk", flat=True)), reason=reason)


def _revoke(token_ids: list[int], *, reason: str) -> int:
    """Revoke the links not revoked yet, each with its `download.link_revoked` entry."""
    revoked = SecureDownloadToken.objects.filter(pk__in=token_ids, revoked_at__isnull=True)
    revoked = list(revoked.select_for_update().values_list("pk", "resource_type", "resource_id"))
    SecureDownloadToken.objects.filter(pk__in=[pk for pk, *_ in revoked]).update(
        revoked_at=Now(), revoked_reason=reason
    )
    for pk, resource_type, resource_id in revoked:
        metadata = {"token_id": pk, **({"reason": reason} if reason else {})}
        audit.log("download.link_revoked", target=(resource_type, resource_id), metadata=metadata)
    return len(revoked)


@transaction.atomic
def purge_expired_tokens(*, older_than_days: int | None = None) -> int:
    """Delete tokens expired more than the retention period ago, with their events, and the
    events of unknown tokens as old; returns how many tokens went."""
    days = settings.DOWNLOAD_TOKEN_RETENTION_DAYS if older_than_days is None else older_than_days
    cutoff = timezone.now() - datetime.timedelta(days=days)
    DownloadEvent.objects.filter(token__isnull=True, created_at__lt=cutoff).delete()
    _, deleted = SecureDownloadToken.objects.filter(expires_at__lt=cutoff).delete()
    return deleted.get(SecureDownloadToken._meta.label, 0)
