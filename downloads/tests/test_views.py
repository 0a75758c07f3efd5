"""The public link `/downloads/<token>/`: a landing page that consumes nothing, a POST that
spends one download, refusals as pages, every attempt recorded, and the token kept secret."""

import datetime
import html
import logging
import re

import pytest
from django.db import connection
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from audit.models import AuditLog
from audit.tests.helpers import actions_after, last_entry_id, only_entry
from downloads import services, tokens
from downloads.models import DownloadEvent
from downloads.tests.helpers import (
    SECURITY_HEADERS,
    age_views,
    expire,
    has_security_headers,
    invoice_link,
    path_of,
    pdf_text,
    reload,
    views_of,
)
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.tests.factories import finalized_invoice

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chromium/131"
PAST = datetime.timedelta(seconds=1)


def text_of(response) -> str:
    return html.unescape(response.content.decode())


@pytest.fixture
def link():
    """(invoice, token, raw): a link to Jane Issuer's finalized invoice for Globex."""
    invoice = finalized_invoice(user=UserFactory(name="Jane Issuer"), client_name="Globex")
    return invoice_link(invoice)


def refused(kind: str, *, max_downloads: int = 5) -> str:
    """The raw token of a link refused for `kind` (unknown: a token that was never issued)."""
    if kind == "unknown":
        return tokens.new_token()[0]
    _, token, raw = invoice_link(max_downloads=max_downloads)
    if kind == "expired":
        expire(token, ago=PAST)
    elif kind == "revoked":
        services.revoke_token(token)
    elif kind == "exhausted":
        for _ in range(max_downloads):
            services.redeem_token(raw)
    return raw


# The landing page


@pytest.mark.parametrize("slash", [True, False], ids=["slash", "no-slash"])
def test_landing_page_describes_the_invoice_and_the_link(client, link, slash):
    invoice, token, raw = link

    response = client.get(path_of(raw, slash=slash))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = text_of(response)
    assert invoice.number in page
    assert "Jane Issuer" in page
    assert "$349.99" in page
    assert re.search(r'id="downloads-left">\s*5\s*<', page)
    assert token.expires_at.strftime("%Y-%m-%d %H:%M") in page


def test_landing_page_download_button_posts_to_the_same_url(client, link):
    _, _, raw = link

    page = client.get(path_of(raw)).content.decode()

    form = re.search(r"<form\b([^>]*)>(.*?)</form>", page, re.DOTALL)
    assert form is not None
    attributes, body = form.groups()
    assert re.search(r'method="post"', attributes, re.IGNORECASE)
    action = re.search(r'action="([^"]*)"', attributes)
    assert action is None or action.group(1) in ("", path_of(raw))
    assert re.search(r'<button[^>]*type="submit"[^>]*id="download"', body)


@pytest.mark.parametrize("method", ["get", "head"])
def test_opening_the_landing_page_consumes_no_download(client, link, method):
    _, token, raw = link

    for _ in range(3):
        assert getattr(client, method)(path_of(raw)).status_code == 200

    assert reload(token).download_count == 0
    assert not DownloadEvent.objects.exists()


# Downloading


@pytest.mark.parametrize("slash", [True, False], ids=["slash", "no-slash"])
def test_post_answers_the_invoice_pdf_as_an_attachment_and_uses_one_download(client, link, slash):
    invoice, token, raw = link

    response = client.post(path_of(raw, slash=slash))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert invoice.number in pdf_text(response.content)
    assert reload(token).download_count == 1
    assert re.search(r'id="downloads-left">\s*4\s*<', client.get(path_of(raw)).content.decode())


def test_post_needs_no_csrf_token(link):
    _, token, raw = link

    response = Client(enforce_csrf_checks=True).post(path_of(raw))

    assert response.status_code == 200
    assert reload(token).download_count == 1


def test_nth_download_of_a_link_limited_to_n_succeeds_and_the_next_is_gone(client):
    _, token, raw = invoice_link(max_downloads=3)

    statuses = [client.post(path_of(raw)).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 410]
    assert reload(token).download_count == 3


# Refusals


@pytest.mark.parametrize(
    ("kind", "status", "says"),
    [
        ("unknown", 404, "Link not found"),
        ("expired", 410, "This link has expired"),
        ("revoked", 410, "This link was withdrawn"),
        ("exhausted", 410, "This link has been used up"),
    ],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_refused_link_answers_a_page_saying_why(client, kind, status, says, method):
    raw = refused(kind)

    response = getattr(client, method)(path_of(raw))

    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert says in text_of(response)


def test_refused_post_consumes_nothing(client):
    _, token, raw = invoice_link()
    expire(token, ago=PAST)

    client.post(path_of(raw))

    assert reload(token).download_count == 0


# Headers


@pytest.mark.parametrize(
    ("kind", "method", "status"),
    [
        ("valid", "get", 200),
        ("valid", "head", 200),
        ("valid", "post", 200),
        ("unknown", "get", 404),
        ("unknown", "post", 404),
        ("expired", "get", 410),
        ("revoked", "post", 410),
        ("exhausted", "post", 410),
    ],
)
def test_every_answer_is_private_uncached_and_unindexed(client, kind, method, status):
    raw = invoice_link()[2] if kind == "valid" else refused(kind)

    response = getattr(client, method)(path_of(raw))

    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert value in response.get(name, ""), name


# Throttling


@pytest.fixture
def download_rate_of_3_a_minute(monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "download": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


def test_requests_past_the_rate_are_throttled_per_client_ip(client, download_rate_of_3_a_minute):
    _, token, raw = invoice_link()

    statuses = [client.get(path_of(raw), REMOTE_ADDR="198.51.100.7").status_code for _ in "abc"]
    throttled = client.post(path_of(raw), REMOTE_ADDR="198.51.100.7")
    elsewhere = client.get(path_of(raw), REMOTE_ADDR="203.0.113.5")

    assert statuses == [200, 200, 200]
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) >= 1
    assert has_security_headers(throttled)
    assert reload(token).download_count == 0
    assert elsewhere.status_code == 200


# Every attempt recorded and audited


def test_every_download_attempt_leaves_an_event_with_its_outcome_and_client(client):
    _, exhausted_token, exhausted = invoice_link(max_downloads=1)
    _, expired_token, expired = invoice_link()
    expire(expired_token, ago=PAST)
    _, revoked_token, revoked = invoice_link()
    services.revoke_token(revoked_token)
    unknown, _ = tokens.new_token()

    for raw in (exhausted, exhausted, expired, revoked, unknown):
        client.post(path_of(raw), REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT=BROWSER)

    events = DownloadEvent.objects.order_by("id").values_list(
        "token", "granted", "reason", "ip_address", "user_agent"
    )
    assert list(events) == [
        (exhausted_token.pk, True, "granted", "198.51.100.7", BROWSER),
        (exhausted_token.pk, False, "exhausted", "198.51.100.7", BROWSER),
        (expired_token.pk, False, "expired", "198.51.100.7", BROWSER),
        (revoked_token.pk, False, "revoked", "198.51.100.7", BROWSER),
        (None, False, "unknown", "198.51.100.7", BROWSER),
    ]


@pytest.mark.parametrize(
    ("proxies", "client_ip"), [(0, "10.0.0.1"), (1, "203.0.113.5"), (2, "198.51.100.7")]
)
def test_event_ip_honours_only_the_trusted_proxies(client, settings, proxies, client_ip):
    settings.TRUSTED_PROXY_COUNT = proxies
    _, _, raw = invoice_link()

    client.post(
        path_of(raw), REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.5"
    )

    assert DownloadEvent.objects.get().ip_address == client_ip


def assert_keeps_the_token_secret(entry: AuditLog, raw: str) -> None:
    assert entry.path == "/downloads/[redacted]/"
    assert raw not in str(entry.__dict__)


def test_a_download_is_audited_once_with_the_token_id_and_a_redacted_path(client):
    invoice, token, raw = invoice_link()
    mark = last_entry_id()

    client.post(path_of(raw), REMOTE_ADDR="198.51.100.7")

    entry = only_entry(mark, "download.succeeded")
    assert entry.success is True
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert entry.metadata["token_id"] == token.pk
    assert entry.ip_address == "198.51.100.7"
    assert entry.user_id is None
    assert_keeps_the_token_secret(entry, raw)


@pytest.mark.parametrize("kind", ["expired", "revoked", "exhausted", "unknown"])
def test_a_refused_download_is_audited_once_with_its_reason_and_a_redacted_path(client, kind):
    raw = refused(kind)
    token = services._find(raw)
    mark = last_entry_id()

    client.post(path_of(raw))

    entry = only_entry(mark, "download.denied")
    assert entry.success is False
    assert entry.metadata["reason"] == kind
    assert entry.metadata["token_id"] == (token.pk if token else None)
    assert_keeps_the_token_secret(entry, raw)


# The token never reaches a log line


def assert_not_logged(raw: str, caplog) -> None:
    assert raw not in caplog.text
    assert all(raw not in str(record.args) for record in caplog.records)
    assert "/downloads/" not in caplog.text  # e.g. Django's "Not Found: /downloads/<token>/"


@pytest.mark.parametrize(
    ("kind", "method", "status"),
    [
        ("unknown", "get", 404),
        ("unknown", "post", 404),
        ("expired", "get", 410),
        ("revoked", "post", 410),
        ("exhausted", "get", 410),
        ("valid", "post", 200),
    ],
)
def test_no_log_line_carries_the_token(client, caplog, kind, method, status):
    caplog.set_level(logging.DEBUG)
    raw = invoice_link()[2] if kind == "valid" else refused(kind)

    response = getattr(client, method)(path_of(raw))

    assert response.status_code == status
    assert_not_logged(raw, caplog)


def test_a_method_other_than_get_head_post_is_refused_without_logging_the_token(client, caplog):
    caplog.set_level(logging.DEBUG)
    _, token, raw = invoice_link()

    response = client.put(path_of(raw))

    assert response.status_code == 405
    assert reload(token).download_count == 0
    assert_not_logged(raw, caplog)


def test_a_link_with_characters_stuck_to_its_end_is_not_found_without_logging_the_token(
    client, caplog
):
    """Mail clients and readers copying a link take punctuation with it: `.../TOKEN/).`"""
    caplog.set_level(logging.DEBUG)
    _, token, raw = invoice_link()

    response = client.get(f"{path_of(raw)}).")

    assert response.status_code == 404
    assert reload(token).download_count == 0
    assert_not_logged(raw, caplog)


# Racing requests (PostgreSQL: SQLite serialises every writer anyway)


@pytest.mark.django_db(transaction=True)
def test_twenty_racing_downloads_of_a_five_download_link_grant_exactly_five(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers")
    _, token, raw = invoice_link(max_downloads=5)

    statuses = race(lambda: Client().post(path_of(raw)).status_code, 20)

    assert sorted(statuses) == [200] * 5 + [410] * 15
    assert reload(token).download_count == 5
    assert DownloadEvent.objects.filter(token=token).count() == 20
    assert DownloadEvent.objects.filter(token=token, granted=True).count() == 5


# Views: a person other than the owner opening the page, at most once a half hour per link

HALF_HOUR = datetime.timedelta(minutes=30)


def open_page(client, raw: str, query: str = "", **headers):
    response = client.get(path_of(raw) + query, **{"HTTP_USER_AGENT": BROWSER, **headers})
    assert response.status_code == 200
    return response


def test_a_client_opening_the_page_counts_one_view_audited_once(client, link):
    invoice, token, raw = link
    mark = last_entry_id()

    open_page(client, raw, REMOTE_ADDR="198.51.100.7")

    view = views_of(token).get()
    assert (view.granted, view.ip_address, view.user_agent) == (True, "198.51.100.7", BROWSER)
    entry = only_entry(mark, "download.viewed")
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert entry.metadata["token_id"] == token.pk
    assert actions_after(mark) == ["download.viewed"]
    assert reload(token).download_count == 0


def test_a_link_counts_one_view_per_half_hour(client, link):
    _, token, raw = link
    for _ in range(3):
        open_page(client, raw)
    assert views_of(token).count() == 1

    age_views(token, ago=HALF_HOUR - datetime.timedelta(minutes=1))
    open_page(client, raw)
    assert views_of(token).count() == 1

    age_views(token, ago=HALF_HOUR + datetime.timedelta(seconds=1))
    mark = last_entry_id()
    open_page(client, raw)
    assert views_of(token).count() == 2
    assert actions_after(mark) == ["download.viewed"]


def test_each_link_counts_its_own_views(client, link):
    invoice, token, raw = link
    _, other_token, other = invoice_link(invoice)

    open_page(client, raw)
    open_page(client, other)

    assert views_of(token).count() == views_of(other_token).count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_SEC_PURPOSE": "prefetch"},
        {"HTTP_USER_AGENT": "Mozilla/5.0 (Windows NT 10.0) BingPreview/1.0b"},
        {"HTTP_USER_AGENT": ""},
    ],
    ids=["prefetch", "scanner", "no-agent"],
)
def test_a_prefetch_or_a_link_scanner_counts_no_view(client, link, headers):
    _, token, raw = link
    mark = last_entry_id()

    open_page(client, raw, **headers)

    assert not views_of(token).exists()
    assert actions_after(mark) == []


def test_head_counts_no_view(client, link):
    _, token, raw = link

    assert client.head(path_of(raw), HTTP_USER_AGENT=BROWSER).status_code == 200

    assert not views_of(token).exists()


def test_a_refused_link_counts_no_view(client):
    raw = refused("expired")

    assert client.get(path_of(raw), HTTP_USER_AGENT=BROWSER).status_code == 410

    assert not DownloadEvent.objects.exists()


def test_the_owner_signed_in_previews_without_a_view(client, link):
    invoice, token, raw = link
    client.force_login(invoice.user)

    open_page(client, raw)

    assert not views_of(token).exists()


def test_someone_else_signed_in_counts_a_view(client, link):
    _, token, raw = link
    client.force_login(UserFactory())

    open_page(client, raw)

    assert views_of(token).count() == 1


def test_the_owners_preview_link_counts_no_view(client, link):
    _, token, raw = link
    preview = services.preview_url(token, raw)
    assert preview.startswith(services.link_url(raw) + "?preview=")

    open_page(client, raw, "?" + preview.split("?", 1)[1])

    assert not views_of(token).exists()


def test_a_forged_or_borrowed_preview_mark_counts_a_view(client, link):
    invoice, token, raw = link
    other_token, other_raw = invoice_link(invoice)[1:]
    borrowed = services.preview_url(other_token, other_raw).split("?", 1)[1]

    open_page(client, raw, "?preview=forged")
    age_views(token, ago=HALF_HOUR * 2)
    open_page(client, raw, "?" + borrowed)

    assert views_of(token).count() == 2


def test_the_owners_download_from_the_preview_link_spends_none_of_the_clients(client, link):
    invoice, token, raw = link
    query = services.preview_url(token, raw).split("?", 1)[1]

    answer = client.post(path_of(raw) + "?" + query)

    assert answer.status_code == 200
    assert answer.content.startswith(b"%PDF")
    assert reload(token).download_count == 0
    invoice.refresh_from_db()
    assert invoice.download_count == 0


@pytest.mark.django_db(transaction=True)
def test_ten_racing_views_of_a_link_count_once(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers")
    _, token, raw = invoice_link()

    statuses = race(lambda: Client().get(path_of(raw), HTTP_USER_AGENT=BROWSER).status_code, 10)

    assert statuses == [200] * 10
    assert views_of(token).count() == 1
    assert AuditLog.objects.filter(action="download.viewed").count() == 1
