"""Links through the API (`/api/invoices/{id}/download-links/`) and in the client's email;
the raw token exists only in the API answer and in the email."""

import datetime
import io
import logging
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.models import AuditLog
from audit.tests.helpers import actions_after, last_entry_id, only_entry
from downloads import services, tokens
from downloads.models import SecureDownloadToken
from downloads.tests.helpers import LINK, invoice_link, path_of, pdf_text, reload
from emails import services as emails
from emails.models import EmailLog
from emails.tests.helpers import free_port, make_due
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.services import VOIDED_LINK
from invoicegen.billing.tests.factories import finalized_invoice, invoice_in_status

pytestmark = pytest.mark.django_db

BASE_URL = "https://invoices.example"


@pytest.fixture(autouse=True)
def _app_base_url(settings):
    settings.APP_BASE_URL = BASE_URL


@pytest.fixture
def invoice(user):
    return finalized_invoice(user=user, client_email="ap@globex.example")


def links_url(invoice, *, slash: bool = True) -> str:
    return f"/api/invoices/{invoice.pk}/download-links{'/' if slash else ''}"


def link_url(invoice, token, *, slash: bool = True) -> str:
    return f"{links_url(invoice)}{token.pk}{'/' if slash else ''}"


def raw_token_of(url: str) -> str:
    match = LINK.fullmatch(url)
    assert match is not None, url
    return match.group(1)


def token_of(raw: str) -> SecureDownloadToken:
    return SecureDownloadToken.objects.get(token_hash=tokens.hash_token(raw))


def hours_from_now(moment: datetime.datetime) -> float:
    return (moment - timezone.now()).total_seconds() / 3600


# Creating a link


@pytest.mark.parametrize("slash", [True, False], ids=["slash", "no-slash"])
def test_create_answers_201_with_a_url_valid_24_hours_for_5_downloads_by_default(
    api, invoice, slash
):
    response = api.post(links_url(invoice, slash=slash))

    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(rf"{re.escape(BASE_URL)}/downloads/[A-Za-z0-9_-]{{43}}/", body["url"])
    assert 23.9 < hours_from_now(parse_datetime(body["expires_at"])) <= 24
    assert body["max_downloads"] == 5
    token = token_of(raw_token_of(body["url"]))
    assert (token.resource_type, token.resource_id) == ("invoice", str(invoice.pk))
    assert token.created_by == invoice.user


@pytest.mark.parametrize(("hours", "downloads"), [(1, 100), (168, 1)])
def test_create_takes_the_lifetime_and_limit_asked_for(api, invoice, hours, downloads):
    response = api.post(links_url(invoice), {"expires_in_hours": hours, "max_downloads": downloads})

    assert response.status_code == 201
    assert hours - 0.1 < hours_from_now(parse_datetime(response.json()["expires_at"])) <= hours
    assert response.json()["max_downloads"] == downloads
    assert token_of(raw_token_of(response.json()["url"])).max_downloads == downloads


def test_create_answers_the_owners_preview_url_which_counts_no_view(api, invoice):
    body = api.post(links_url(invoice)).json()
    assert body["preview_url"].startswith(body["url"] + "?preview=")
    token = token_of(raw_token_of(body["url"]))
    browser = {"HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Chromium/131"}

    assert Client().get(body["preview_url"].removeprefix(BASE_URL), **browser).status_code == 200
    assert not token.events.exists()
    assert Client().get(body["url"].removeprefix(BASE_URL), **browser).status_code == 200
    assert token.events.get().kind == "viewed"


def test_created_url_opens_the_invoice(api, invoice):
    url = api.post(links_url(invoice)).json()["url"]

    response = Client().post(url.removeprefix(BASE_URL))

    assert response.status_code == 200
    assert invoice.number in pdf_text(response.content)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expires_in_hours", 0),
        ("expires_in_hours", 169),
        ("expires_in_hours", "x"),
        ("max_downloads", 0),
        ("max_downloads", 101),
        ("max_downloads", "x"),
    ],
)
def test_create_refuses_values_out_of_bounds_with_400_naming_the_field(api, invoice, field, value):
    response = api.post(links_url(invoice), {field: value})

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not SecureDownloadToken.objects.exists()


def test_creating_a_link_is_audited_once_for_its_owner_without_the_token(api, user, invoice):
    mark = last_entry_id()

    url = api.post(links_url(invoice)).json()["url"]

    entry = only_entry(mark, "download.link_created")
    raw = raw_token_of(url)
    assert entry.user_id == user.pk
    assert (entry.resource_type, entry.resource_id) == ("invoice", str(invoice.pk))
    assert entry.metadata["token_id"] == token_of(raw).pk
    assert raw not in str(entry.__dict__)


# Listing


def test_list_shows_the_invoices_links_with_their_counts_and_never_a_token(api, invoice):
    urls = [api.post(links_url(invoice)).json()["url"] for _ in range(2)]
    used, revoked = (token_of(raw_token_of(url)) for url in urls)
    services.redeem_token(raw_token_of(urls[0]))
    services.revoke_token(revoked)
    invoice_link(finalized_invoice(user=invoice.user))  # another invoice's link

    response = api.get(links_url(invoice))

    assert response.status_code == 200
    listed = {link["id"]: link for link in response.json()}
    assert set(listed) == {used.pk, revoked.pk}
    assert listed[used.pk]["download_count"] == 1
    assert listed[used.pk]["revoked_at"] is None
    assert listed[revoked.pk]["revoked_at"] is not None
    content = response.content.decode()
    for token, url in zip((used, revoked), urls, strict=True):
        assert raw_token_of(url) not in content
        assert token.token_hash not in content


# Revoking


@pytest.mark.parametrize("slash", [True, False], ids=["slash", "no-slash"])
def test_delete_revokes_the_link_which_then_answers_410(api, invoice, slash):
    raw = raw_token_of(api.post(links_url(invoice)).json()["url"])
    token = token_of(raw)

    response = api.delete(link_url(invoice, token, slash=slash))

    assert response.status_code == 204
    assert reload(token).revoked_at is not None
    assert Client().get(path_of(raw)).status_code == 410
    assert Client().post(path_of(raw)).status_code == 410


def test_revoking_a_link_is_audited_once_for_its_owner(api, user, invoice):
    raw = raw_token_of(api.post(links_url(invoice)).json()["url"])
    token = token_of(raw)
    mark = last_entry_id()

    api.delete(link_url(invoice, token))

    entry = only_entry(mark, "download.link_revoked")
    assert entry.user_id == user.pk
    assert entry.metadata["token_id"] == token.pk
    assert raw not in str(entry.__dict__)


def test_delete_of_another_invoices_link_answers_404_and_revokes_nothing(api, user, invoice):
    _, other_token, raw = invoice_link(finalized_invoice(user=user))

    response = api.delete(link_url(invoice, other_token))

    assert response.status_code == 404
    assert reload(other_token).revoked_at is None
    assert Client().get(path_of(raw)).status_code == 200


# Only the owner


@pytest.fixture
def strangers_invoice_and_link():
    invoice, token, _ = invoice_link(finalized_invoice(user=UserFactory()))
    return invoice, token


@pytest.mark.parametrize("method", ["post", "get", "delete"])
def test_another_users_invoice_answers_404(api, strangers_invoice_and_link, method):
    invoice, token = strangers_invoice_and_link
    url = link_url(invoice, token) if method == "delete" else links_url(invoice)

    response = getattr(api, method)(url)

    assert response.status_code == 404
    assert "url" not in response.json()
    assert SecureDownloadToken.objects.get() == token
    assert reload(token).revoked_at is None


@pytest.mark.parametrize("method", ["post", "get", "delete"])
def test_anonymous_caller_gets_401(anon_client, strangers_invoice_and_link, method):
    invoice, token = strangers_invoice_and_link
    url = link_url(invoice, token) if method == "delete" else links_url(invoice)

    response = getattr(anon_client, method)(url)

    assert response.status_code == 401
    assert SecureDownloadToken.objects.get() == token
    assert reload(token).revoked_at is None


# The client's email


def send(api, invoice, capture_on_commit):
    with capture_on_commit(execute=True):
        response = api.post(f"/api/invoices/{invoice.pk}/send/")
    assert response.status_code == 202


def client_email_links(invoice) -> list[str]:
    """The raw tokens in the emails the client received, oldest first."""
    bodies = [message.body for message in mail.outbox if message.to == [invoice.client_email]]
    return [raw for body in bodies for raw in LINK.findall(body)]


def client_email_rows(invoice):
    return EmailLog.objects.filter(
        template_name="invoice_notification_client", resource_id=str(invoice.pk)
    ).order_by("id")


def test_sent_invoice_emails_the_client_a_working_link_tied_to_that_email(
    api, invoice, django_capture_on_commit_callbacks
):
    send(api, invoice, django_capture_on_commit_callbacks)

    [raw] = client_email_links(invoice)
    [email] = client_email_rows(invoice)
    token = token_of(raw)
    assert token.email == email
    assert (token.resource_type, token.resource_id) == ("invoice", str(invoice.pk))
    [message] = [message for message in mail.outbox if message.to == ["ap@globex.example"]]
    assert f"{BASE_URL}/downloads/{raw}/" in message.body
    landing = Client().get(path_of(raw))
    assert landing.status_code == 200
    assert invoice.number in landing.content.decode()
    download = Client().post(path_of(raw))
    assert download.status_code == 200
    assert invoice.number in pdf_text(download.content)


def test_sending_the_invoice_again_mails_a_new_link_and_withdraws_the_unused_one(
    api, invoice, django_capture_on_commit_callbacks
):
    send(api, invoice, django_capture_on_commit_callbacks)
    send(api, invoice, django_capture_on_commit_callbacks)

    first, second = client_email_links(invoice)
    assert first != second
    assert reload(token_of(first)).revoked_at is not None
    assert Client().post(path_of(first)).status_code == 410
    assert Client().post(path_of(second)).status_code == 200


def test_resending_the_email_mails_a_new_link_and_withdraws_the_unused_one(
    api, invoice, django_capture_on_commit_callbacks
):
    send(api, invoice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        emails.resend_email(client_email_rows(invoice).get())

    first, second = client_email_links(invoice)
    assert first != second
    assert token_of(second).email == client_email_rows(invoice).last()
    assert reload(token_of(first)).revoked_at is not None
    assert Client().post(path_of(second)).status_code == 200


def send_while_the_mail_server_is_down(api, invoice, settings, capture_on_commit):
    """The client's email is rendered, its link made, and its first attempt fails."""
    locmem = settings.EMAIL_BACKEND
    settings.EMAIL_BACKEND = "emails.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nobody listens
    send(api, invoice, capture_on_commit)
    settings.EMAIL_BACKEND = locmem


def test_a_retried_delivery_mails_the_link_its_failed_attempt_made(
    api, invoice, settings, django_capture_on_commit_callbacks
):
    send_while_the_mail_server_is_down(api, invoice, settings, django_capture_on_commit_callbacks)
    email = client_email_rows(invoice).get()
    [made] = SecureDownloadToken.objects.filter(email=email)
    assert EmailLog.objects.get(pk=email.pk).status == EmailLog.Status.QUEUED

    make_due(email)
    mark = last_entry_id()
    emails.deliver_email(email.pk)

    [raw] = client_email_links(invoice)
    assert token_of(raw).pk == made.pk
    assert reload(made).revoked_at is None
    assert actions_after(mark, action__startswith="download.") == []
    assert Client().post(path_of(raw)).status_code == 200


def test_a_late_retry_of_an_earlier_email_leaves_the_newer_emails_link_working(
    api, invoice, settings, django_capture_on_commit_callbacks
):
    send_while_the_mail_server_is_down(api, invoice, settings, django_capture_on_commit_callbacks)
    send(api, invoice, django_capture_on_commit_callbacks)
    earlier, newer = client_email_rows(invoice)

    make_due(earlier)
    emails.deliver_email(earlier.pk)

    newer_link, earlier_link = client_email_links(invoice)
    assert token_of(newer_link).email == newer
    assert token_of(earlier_link).email == earlier
    assert Client().post(path_of(newer_link)).status_code == 200
    assert Client().post(path_of(earlier_link)).status_code == 410  # superseded by the newer


def test_a_link_the_client_already_used_stays_valid_when_the_invoice_is_sent_again(
    api, invoice, django_capture_on_commit_callbacks
):
    send(api, invoice, django_capture_on_commit_callbacks)
    [first] = client_email_links(invoice)
    Client().post(path_of(first))

    send(api, invoice, django_capture_on_commit_callbacks)

    assert reload(token_of(first)).revoked_at is None
    assert Client().post(path_of(first)).status_code == 200


# The raw token is shown once and stored nowhere


def test_no_raw_token_is_kept_in_the_database_the_outbox_the_trail_or_the_logs(
    api, invoice, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    raws = [raw_token_of(api.post(links_url(invoice)).json()["url"]) for _ in range(2)]
    send(api, invoice, django_capture_on_commit_callbacks)
    raws += client_email_links(invoice)
    unknown, _ = tokens.new_token()
    for raw in (*raws, unknown):
        Client().get(path_of(raw))
        Client().post(path_of(raw))

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)

    assert len(raws) == 3
    for raw in (*raws, unknown):
        assert raw not in dump.getvalue()
        assert raw not in caplog.text
        for row in (*EmailLog.objects.values(), *AuditLog.objects.values()):
            assert raw not in str(row)
    for raw in raws:
        assert tokens.hash_token(raw) in dump.getvalue()  # the dump does hold the links
    assert AuditLog.objects.filter(action="download.succeeded").count() == 3


# Links only to issued invoices; voiding withdraws them


@pytest.mark.parametrize("status", ["draft", "void"])
def test_no_link_is_made_to_a_draft_or_a_void_invoice(api, user, status):
    invoice = invoice_in_status(status, user=user)

    response = api.post(links_url(invoice), {}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Cannot make a download link to an invoice that is {status}."
    }
    assert not SecureDownloadToken.objects.exists()


def test_a_paid_invoice_gets_a_link(api, user):
    response = api.post(links_url(invoice_in_status("paid", user=user)), {}, format="json")

    assert response.status_code == 201


def test_voiding_withdraws_every_link_and_its_page_says_why(api, invoice):
    first = raw_token_of(api.post(links_url(invoice), {}, format="json").json()["url"])
    second = raw_token_of(api.post(links_url(invoice), {}, format="json").json()["url"])
    mark = last_entry_id()

    assert api.post(f"/api/invoices/{invoice.pk}/void/").status_code == 200

    page = Client().get(f"/downloads/{first}/")
    assert page.status_code == 410
    assert "This invoice was voided by its issuer" in page.content.decode()
    assert Client().post(f"/downloads/{second}/").status_code == 410
    revoked = AuditLog.objects.filter(id__gt=mark, action="download.link_revoked")
    assert sorted(entry.metadata["token_id"] for entry in revoked) == sorted(
        token_of(raw).pk for raw in (first, second)
    )
    assert {entry.metadata["reason"] for entry in revoked} == {VOIDED_LINK}
    assert actions_after(mark).count("invoice.voided") == 1


def test_a_link_the_sender_withdrew_keeps_the_plain_words(api, invoice):
    raw = raw_token_of(api.post(links_url(invoice), {}, format="json").json()["url"])
    assert api.delete(link_url(invoice, token_of(raw))).status_code == 204

    page = Client().get(f"/downloads/{raw}/").content.decode()

    assert "The sender has withdrawn this link" in page


def test_an_invoice_voided_while_its_email_waits_is_never_mailed_and_its_link_is_dead(
    api, invoice, settings, django_capture_on_commit_callbacks
):
    send_while_the_mail_server_is_down(api, invoice, settings, django_capture_on_commit_callbacks)
    email = client_email_rows(invoice).get()
    [made] = SecureDownloadToken.objects.filter(email=email)

    assert api.post(f"/api/invoices/{invoice.pk}/void/").status_code == 200
    make_due(email)
    mail.outbox.clear()
    emails.deliver_email(email.pk)

    email = EmailLog.objects.get(pk=email.pk)
    assert email.status == EmailLog.Status.FAILED  # at once: no retry can bring it back
    assert email.last_error == (
        f"Withdrawn: Invoice {invoice.number} is void: this email is not sent."
    )
    assert mail.outbox == []
    assert reload(made).revoked_at is not None
    assert not SecureDownloadToken.objects.filter(revoked_at__isnull=True).exists()


def test_an_invoice_voided_before_its_email_was_first_rendered_gets_no_link(
    api, invoice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):  # the email waits in the outbox
        assert api.post(f"/api/invoices/{invoice.pk}/send/").status_code == 202
    assert api.post(f"/api/invoices/{invoice.pk}/void/").status_code == 200

    email = client_email_rows(invoice).get()
    emails.deliver_email(email.pk)

    assert EmailLog.objects.get(pk=email.pk).status == EmailLog.Status.FAILED
    assert not SecureDownloadToken.objects.exists()
