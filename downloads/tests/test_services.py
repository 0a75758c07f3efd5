"""Issuing, inspecting, redeeming, revoking and purging links, through the services."""

import datetime

import pytest
from django.utils import timezone

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from downloads import services, tasks, tokens
from downloads.models import DownloadEvent, SecureDownloadToken
from downloads.tests.helpers import expire, invoice_link, reload
from emails import services as emails
from emails.models import EmailLog
from invoicegen.billing.events import invoice_params
from invoicegen.billing.tests.factories import finalized_invoice

pytestmark = pytest.mark.django_db

Reason = DownloadEvent.Reason
HOUR = datetime.timedelta(hours=1)


def expires_in(token: SecureDownloadToken) -> datetime.timedelta:
    return token.expires_at - timezone.now()


# Issuing


def test_issued_link_lasts_24_hours_and_allows_5_downloads_by_default():
    invoice, token, _ = invoice_link()

    token = reload(token)
    assert 23 * HOUR < expires_in(token) <= 24 * HOUR
    assert token.max_downloads == 5
    assert token.download_count == 0
    assert token.revoked_at is None
    assert (token.resource_type, token.resource_id) == ("invoice", str(invoice.pk))
    assert token.created_by == invoice.user


def test_issued_link_defaults_come_from_the_settings(settings):
    settings.DOWNLOAD_TOKEN_TTL_HOURS = 2
    settings.DOWNLOAD_TOKEN_MAX_DOWNLOADS = 3

    _, token, _ = invoice_link()

    assert HOUR < expires_in(token) <= 2 * HOUR
    assert token.max_downloads == 3


def test_issued_link_takes_its_lifetime_and_limit_from_the_caller():
    _, token, _ = invoice_link(expires_in_hours=168, max_downloads=100)

    assert 167 * HOUR < expires_in(token) <= 168 * HOUR
    assert token.max_downloads == 100


def test_issued_link_keeps_only_the_sha256_of_its_raw_token():
    _, token, raw = invoice_link()

    row = SecureDownloadToken.objects.filter(pk=token.pk).values().get()
    assert row["token_hash"] == tokens.hash_token(raw)
    assert raw not in {str(value) for value in row.values()}


def test_issuing_a_link_is_audited_once_with_its_token_id_and_not_its_token():
    mark = last_entry_id()

    invoice, token, raw = invoice_link(max_downloads=2)

    entry = only_entry(mark, "download.link_created")
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert entry.metadata["token_id"] == token.pk
    assert entry.metadata["max_downloads"] == 2
    assert raw not in str(entry.__dict__)
    assert token.token_hash not in str(entry.__dict__)


# The link in an email: one per email, the same at every rendering


def client_emails(invoice, count: int) -> list[EmailLog]:
    """Outbox rows of the client's email about the invoice, as each sending writes one."""
    return [
        emails.queue_email(
            "invoice_notification_client",
            to=invoice.client_email,
            context=invoice_params(invoice),
            resource=("invoice", invoice.pk),
        )
        for _ in range(count)
    ]


def issue_for(email: EmailLog, invoice):
    return services.issue_email_download_token(
        "invoice", invoice.pk, email=email, created_by=invoice.user
    )


def test_an_emails_link_is_made_and_audited_once_then_found_again_at_each_rendering():
    invoice = finalized_invoice()
    [email] = client_emails(invoice, 1)
    mark = last_entry_id()

    renderings = [issue_for(email, invoice) for _ in range(3)]

    assert len({(token.pk, raw) for token, raw in renderings}) == 1
    token, raw = renderings[0]
    assert reload(token).email == email
    assert reload(token).revoked_at is None
    assert services.inspect_token(raw).pk == token.pk
    entry = only_entry(mark, "download.link_created")
    assert entry.metadata == {
        "token_id": token.pk,
        "expires_at": entry.metadata["expires_at"],
        "max_downloads": 5,
        "email_id": email.pk,
    }
    assert actions_after(mark) == ["download.link_created"]


def test_each_email_gets_its_own_link_and_withdraws_the_unused_ones_of_earlier_emails():
    invoice = finalized_invoice()
    first_email, second_email = client_emails(invoice, 2)
    first, _ = issue_for(first_email, invoice)
    api_link = services.issue_download_token("invoice", invoice.pk)[0]
    mark = last_entry_id()

    second, _ = issue_for(second_email, invoice)

    assert second.pk != first.pk
    assert reload(first).revoked_at is not None
    assert only_entry(mark, "download.link_revoked").metadata == {"token_id": first.pk}
    assert reload(api_link).revoked_at is None  # made through the API: not the email's to take


def test_a_late_rendering_of_an_earlier_email_withdraws_no_later_emails_link():
    invoice = finalized_invoice()
    first_email, second_email = client_emails(invoice, 2)
    first, first_raw = issue_for(first_email, invoice)
    second, _ = issue_for(second_email, invoice)
    mark = last_entry_id()

    again, again_raw = issue_for(first_email, invoice)  # its retry comes after the new sending

    assert (again.pk, again_raw) == (first.pk, first_raw)
    assert reload(second).revoked_at is None
    assert actions_after(mark) == []


# Inspecting (the landing page) consumes nothing


def test_inspecting_a_link_consumes_nothing_and_records_nothing():
    _, token, raw = invoice_link(max_downloads=1)

    for _ in range(3):
        assert services.inspect_token(raw).pk == token.pk

    assert reload(token).download_count == 0
    assert not DownloadEvent.objects.exists()


# Redeeming


def test_each_redemption_uses_one_download_and_the_one_past_the_limit_is_refused():
    _, token, raw = invoice_link(max_downloads=3)

    counts = [services.redeem_token(raw).download_count for _ in range(3)]
    with pytest.raises(services.DownloadDenied) as denial:
        services.redeem_token(raw)

    assert counts == [1, 2, 3]
    assert denial.value.reason == Reason.EXHAUSTED
    assert reload(token).download_count == 3


def test_a_link_is_refused_once_its_expiry_has_passed():
    _, token, raw = invoice_link()
    expire(token, ago=datetime.timedelta(seconds=1))

    with pytest.raises(services.DownloadDenied) as inspected:
        services.inspect_token(raw)
    with pytest.raises(services.DownloadDenied) as redeemed:
        services.redeem_token(raw)

    assert inspected.value.reason == redeemed.value.reason == Reason.EXPIRED
    assert reload(token).download_count == 0


def test_a_link_is_expired_at_its_expiry_instant_itself(monkeypatch):
    """Valid until, not through, its expiry: at that very instant the page refuses it, and a
    download refused then is recorded as expired, not used up."""
    _, token, raw = invoice_link()
    expire(token, ago=datetime.timedelta(seconds=5))  # past by the database's clock too
    instant = reload(token).expires_at
    monkeypatch.setattr(services.timezone, "now", lambda: instant)

    with pytest.raises(services.DownloadDenied) as inspected:
        services.inspect_token(raw)
    with pytest.raises(services.DownloadDenied) as redeemed:
        services.redeem_token(raw)

    assert inspected.value.reason == redeemed.value.reason == Reason.EXPIRED
    assert DownloadEvent.objects.get(token=token).reason == Reason.EXPIRED


def test_a_revoked_link_is_refused_although_downloads_and_time_are_left():
    _, token, raw = invoice_link()

    services.revoke_token(token)

    with pytest.raises(services.DownloadDenied) as inspected:
        services.inspect_token(raw)
    with pytest.raises(services.DownloadDenied) as redeemed:
        services.redeem_token(raw)
    assert inspected.value.reason == redeemed.value.reason == Reason.REVOKED
    assert reload(token).download_count == 0


def test_an_unknown_token_is_refused_as_unknown():
    raw, _ = tokens.new_token()

    with pytest.raises(services.DownloadDenied) as denial:
        services.redeem_token(raw)

    assert denial.value.reason == Reason.UNKNOWN
    assert denial.value.token is None


def test_every_redemption_is_recorded_granted_or_denied():
    _, token, raw = invoice_link(max_downloads=1)
    unknown, _ = tokens.new_token()

    services.redeem_token(raw)
    for attempt in (raw, unknown):
        with pytest.raises(services.DownloadDenied):
            services.redeem_token(attempt)

    events = DownloadEvent.objects.order_by("id").values_list("token", "granted", "reason")
    assert list(events) == [
        (token.pk, True, Reason.GRANTED),
        (token.pk, False, Reason.EXHAUSTED),
        (None, False, Reason.UNKNOWN),
    ]


# Revoking


def test_revoking_a_link_is_audited_once_and_revoking_it_again_changes_nothing():
    _, token, raw = invoice_link()
    mark = last_entry_id()

    services.revoke_token(token)
    revoked_at = reload(token).revoked_at
    services.revoke_token(token)

    entry = only_entry(mark, "download.link_revoked")
    assert entry.metadata["token_id"] == token.pk
    assert raw not in str(entry.__dict__)
    assert revoked_at is not None
    assert reload(token).revoked_at == revoked_at


def test_revoking_a_link_answers_it_revoked():
    _, token, _ = invoice_link()

    revoked = services.revoke_token(token)

    assert revoked.revoked_at is not None
    assert revoked.revoked_at == reload(token).revoked_at


def test_revoking_a_resources_links_withdraws_the_live_ones_with_the_owners_reason():
    invoice, first, _ = invoice_link()
    _, second, _ = invoice_link(invoice)
    _, withdrawn, _ = invoice_link(invoice)
    services.revoke_token(withdrawn)
    _, other, _ = invoice_link()  # another invoice's

    count = services.revoke_resource_tokens("invoice", invoice.pk, reason="Voided.")

    assert count == 2
    assert {reload(t).revoked_reason for t in (first, second)} == {"Voided."}
    assert reload(withdrawn).revoked_reason == ""
    assert reload(other).revoked_at is None


def test_a_resources_owner_hears_of_each_counted_view_and_granted_download(monkeypatch):
    """The owner's callbacks run in the transaction that records the event: a view counted
    (one per window) and a download granted, never a refused one."""
    heard = []
    monkeypatch.setitem(
        services._resources,
        "thing",
        services.Resource(
            describe=dict,
            render=lambda resource_id: ("thing.pdf", b""),
            on_viewed=lambda resource_id: heard.append(("viewed", resource_id)),
            on_downloaded=lambda resource_id: heard.append(("downloaded", resource_id)),
        ),
    )
    token, raw = services.issue_download_token("thing", 7, max_downloads=1)

    viewed = services.record_view(token)
    again = services.record_view(token)
    services.redeem_token(raw)
    with pytest.raises(services.DownloadDenied):
        services.redeem_token(raw)

    assert (viewed.kind, viewed.token_id, again) == (DownloadEvent.Kind.VIEWED, token.pk, None)
    assert heard == [("viewed", "7"), ("downloaded", "7")]


# Purging


@pytest.fixture
def links_by_expiry(settings):
    """Links expired just past the retention period, just within it, and still valid; each
    with one download event."""
    settings.DOWNLOAD_TOKEN_RETENTION_DAYS = 90
    links = {}
    for name in ("expired_past_retention", "expired_within_retention", "valid"):
        _, token, raw = invoice_link()
        services.redeem_token(raw)
        links[name] = token
    expire(links["expired_past_retention"], ago=datetime.timedelta(days=90, hours=1))
    expire(links["expired_within_retention"], ago=datetime.timedelta(days=89, hours=23))
    return links


def test_purge_deletes_links_expired_longer_than_the_retention_with_their_events(
    links_by_expiry,
):
    services.purge_expired_tokens()

    gone = links_by_expiry["expired_past_retention"]
    kept = [links_by_expiry["expired_within_retention"].pk, links_by_expiry["valid"].pk]
    assert set(SecureDownloadToken.objects.values_list("pk", flat=True)) == set(kept)
    assert not DownloadEvent.objects.filter(token_id=gone.pk).exists()
    assert set(DownloadEvent.objects.values_list("token_id", flat=True)) == set(kept)


def test_purge_counts_links_and_drops_old_events_of_unknown_links(links_by_expiry):
    old = DownloadEvent.objects.create(token=None, granted=False, reason="unknown")
    DownloadEvent.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=400)
    )
    recent = DownloadEvent.objects.create(token=None, granted=False, reason="unknown")

    assert services.purge_expired_tokens() == 1

    unknown = DownloadEvent.objects.filter(token=None).values_list("pk", flat=True)
    assert list(unknown) == [recent.pk]


def test_purge_keeps_every_event_of_a_link_it_keeps_however_old(links_by_expiry):
    """Only the events of no link (an unknown token's) go by their age: a kept link keeps
    its whole history."""
    kept = [links_by_expiry["expired_within_retention"], links_by_expiry["valid"]]
    old = [
        DownloadEvent.objects.create(token=link, granted=True, reason="granted") for link in kept
    ]
    DownloadEvent.objects.filter(pk__in=[event.pk for event in old]).update(
        created_at=timezone.now() - datetime.timedelta(days=400)
    )

    services.purge_expired_tokens()

    assert DownloadEvent.objects.filter(pk__in=[event.pk for event in old]).count() == 2


def test_purge_with_nothing_to_delete_counts_none():
    invoice_link()

    assert services.purge_expired_tokens() == 0


def test_purge_follows_the_retention_setting(links_by_expiry, settings):
    settings.DOWNLOAD_TOKEN_RETENTION_DAYS = 30

    services.purge_expired_tokens()

    assert list(SecureDownloadToken.objects.values_list("pk", flat=True)) == [
        links_by_expiry["valid"].pk
    ]


def test_purge_task_runs_the_purge(links_by_expiry):
    tasks.purge_expired_tokens.delay()

    remaining = set(SecureDownloadToken.objects.values_list("pk", flat=True))
    assert links_by_expiry["expired_past_retention"].pk not in remaining
    assert links_by_expiry["expired_within_retention"].pk in remaining
    assert links_by_expiry["valid"].pk in remaining
