"""Staff see links in the admin by a prefix of their hash, with their events; they revoke
links but neither add nor delete them."""

import datetime
import html
import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import formats, timezone

from audit.tests.helpers import actions_after, last_entry_id, only_entry
from downloads import services
from downloads.models import SecureDownloadToken
from downloads.tests.helpers import LINK, expire, invoice_link, path_of, reload
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services as billing
from invoicegen.billing.tests.factories import finalized_invoice

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:downloads_securedownloadtoken_changelist")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chromium/131"


@pytest.fixture
def admin(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def change_url(token) -> str:
    return reverse("admin:downloads_securedownloadtoken_change", args=[token.pk])


def text_of(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def cell(page: str, token, field: str) -> str:
    """The changelist cell of `field` in the row of `token`."""
    row = re.search(
        rf'<tr>\s*<td class="action-checkbox">[^\n]*value="{token.pk}".*?</tr>', page, re.DOTALL
    )
    assert row is not None, f"no row for link {token.pk}"
    value = re.search(rf'<t[dh] class="field-{field}[^"]*">(.*?)</t[dh]>', row.group(0), re.DOTALL)
    assert value is not None, f"no {field} cell"
    return re.sub(r"<[^>]+>", "", value.group(1)).strip()


def readonly_value(page: str, field: str) -> str:
    """The value of a read-only field on a change page."""
    block = re.search(
        rf'class="form-row[^"]*field-{field}\b.*?<div class="readonly">(.*?)</div>',
        page,
        re.DOTALL,
    )
    assert block is not None, f"no {field} field"
    return re.sub(r"<[^>]+>", "", block.group(1)).strip()


@pytest.fixture
def emailed_link(django_capture_on_commit_callbacks):
    """The link in a client's invoice email, downloaded once: (token, raw token)."""
    invoice = finalized_invoice(client_email="ap@globex.example")
    with django_capture_on_commit_callbacks(execute=True):
        billing.send_invoice(invoice)
    [raw] = [
        raw
        for message in mail.outbox
        if message.to == ["ap@globex.example"]
        for raw in LINK.findall(message.body)
    ]
    Client().post(path_of(raw), REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT=BROWSER)
    return SecureDownloadToken.objects.get(email__to_email="ap@globex.example"), raw


def test_changelist_shows_links_by_hash_prefix_with_counts_expiry_status_and_email(
    admin, emailed_link
):
    token, raw = emailed_link
    _, expired, _ = invoice_link()
    expire(expired, ago=datetime.timedelta(hours=1))
    _, revoked, _ = invoice_link()
    services.revoke_token(revoked)
    _, used_up, used_up_raw = invoice_link(max_downloads=1)
    services.redeem_token(used_up_raw)

    page = text_of(admin.get(CHANGELIST))

    assert cell(page, token, "hash_prefix") == f"{token.token_hash[:12]}…"
    assert raw not in page
    assert token.token_hash not in page
    assert cell(page, token, "download_count") == "1"
    assert cell(page, token, "max_downloads") == "5"
    expires_at = formats.localize(timezone.template_localtime(token.expires_at))
    assert cell(page, token, "expires_at") == expires_at
    assert "ap@globex.example" in cell(page, token, "email")
    statuses = {link.pk: cell(page, link, "status") for link in (token, expired, revoked, used_up)}
    assert statuses == {
        token.pk: "active",
        expired.pk: "expired",
        revoked.pk: "revoked",
        used_up.pk: "used up",
    }


def test_change_page_shows_the_link_and_its_events_but_no_token(admin, emailed_link):
    token, raw = emailed_link
    Client().post(path_of(raw), REMOTE_ADDR="203.0.113.5", HTTP_USER_AGENT="curl/8.5")
    services.revoke_token(token)
    Client().post(path_of(raw), REMOTE_ADDR="203.0.113.5", HTTP_USER_AGENT="curl/8.5")

    page = text_of(admin.get(change_url(token)))

    assert raw not in page
    assert token.token_hash not in page
    assert readonly_value(page, "hash_prefix") == f"{token.token_hash[:12]}…"
    assert readonly_value(page, "download_count") == "2"
    assert readonly_value(page, "max_downloads") == "5"
    assert readonly_value(page, "status") == "revoked"
    assert readonly_value(page, "expires_at") == formats.localize(
        timezone.template_localtime(token.expires_at)
    )
    assert "ap@globex.example" in readonly_value(page, "email")
    events = re.findall(r'<tr class="form-row[^"]*"[^>]*id="events-\d+">(.*?)</tr>', page, re.S)
    rows = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", event)).strip() for event in events]
    assert len(rows) == 3
    assert "revoked" in rows[0]
    assert "203.0.113.5" in rows[0]
    assert "curl/8.5" in rows[0]
    assert "granted" in rows[2]
    assert "198.51.100.7" in rows[2]
    assert BROWSER in rows[2]


def test_revoke_action_revokes_the_selected_links_each_audited_once(admin):
    links = [invoice_link() for _ in range(3)]
    chosen, spared = links[:2], links[2]
    mark = last_entry_id()

    response = admin.post(
        CHANGELIST,
        {"action": "revoke_selected", "_selected_action": [token.pk for _, token, _ in chosen]},
        follow=True,
    )

    assert response.status_code == 200
    for _, token, raw in chosen:
        assert reload(token).revoked_at is not None
        assert Client().get(path_of(raw)).status_code == 410
        entry = only_entry(mark, "download.link_revoked", metadata__token_id=token.pk)
        assert raw not in str(entry.__dict__)
    assert actions_after(mark, action="download.link_revoked") == ["download.link_revoked"] * 2
    assert reload(spared[1]).revoked_at is None


def test_links_cannot_be_added_or_deleted_in_the_admin(admin):
    _, token, _ = invoice_link()
    delete_url = reverse("admin:downloads_securedownloadtoken_delete", args=[token.pk])

    changelist = admin.get(CHANGELIST)

    assert admin.get(reverse("admin:downloads_securedownloadtoken_add")).status_code == 403
    assert admin.get(delete_url).status_code == 403
    assert admin.post(delete_url, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in changelist.content.decode()
    assert "revoke_selected" in changelist.content.decode()
    assert SecureDownloadToken.objects.filter(pk=token.pk).exists()
