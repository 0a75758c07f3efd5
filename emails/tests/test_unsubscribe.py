"""One-click unsubscribe (RFC 8058, RFC 2369): the headers every email that may be refused
carries, and the URL they name: a GET changes nothing, a POST with no session and no CSRF token
stops the topic, audited once; a tampered or foreign token is refused."""

import io
import logging
import re
from urllib.parse import unquote, urlsplit

import pytest
from django.core import signing
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from audit.tests.helpers import actions_after, entries_after, last_entry_id, only_entry
from emails import unsubscribe
from emails.apps import check_links_are_https
from emails.models import EmailLog
from emails.services import deliver_email, queue_email, render
from invoicegen.accounts.events import queue_account_email
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.core.redaction import RedactSecrets
from notifications import preferences, services
from notifications.models import Notification
from notifications.types import EMAIL, IN_APP

pytestmark = pytest.mark.django_db

BASE_URL = "https://app.invoices.example"
HEADER = re.compile(r"<(https://[^>]+)>, <(mailto:[^>]+)>")


@pytest.fixture(autouse=True)
def _https_app(settings):
    settings.APP_BASE_URL = BASE_URL
    settings.EMAIL_UNSUBSCRIBE_ADDRESS = "unsubscribe@invoices.example"


def paid(user) -> Notification:
    params = {"invoice_number": "INV-7", "client_name": "Globex", "total": "10.00 EUR"}
    return services.notify(user, "invoice_paid", params=params)


def sent_headers(smtp, email: EmailLog) -> dict:
    deliver_email(email.pk)
    [message] = [m for m in smtp.messages if m["Message-ID"] == email.message_id]
    return message


def link_of(email: EmailLog) -> str:
    """The path of the email's one-click URL, as its header names it."""
    url = HEADER.fullmatch(unsubscribe.headers(email)["List-Unsubscribe"]).group(1)
    return urlsplit(url).path


def one_click(path: str):
    """What a mail provider sends: a POST, no session, no CSRF token (RFC 8058)."""
    client = Client(enforce_csrf_checks=True)
    return client.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )


# The headers


def test_a_notification_email_names_a_one_click_url_and_a_mailto_on_the_wire(smtp):
    owner = UserFactory()
    email = paid(owner).emails.get()

    message = sent_headers(smtp, email)

    # Folded on the wire (a long line), unfolded here: one space may lead.
    url, mailto = HEADER.fullmatch(message["List-Unsubscribe"].strip()).groups()
    assert url.startswith(f"{BASE_URL}/unsubscribe/") and url.endswith("/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mailto.startswith("mailto:unsubscribe@invoices.example?subject=unsubscribe%20")
    token = urlsplit(url).path.removeprefix("/unsubscribe/").removesuffix("/")
    assert unquote(mailto.partition("%20")[2]) == token
    assert str(owner.pk) not in url.replace(token, "")  # the token is all there is


@pytest.mark.parametrize("template", ["password_reset", "email_verification", "welcome"])
def test_an_accounts_own_security_emails_carry_no_unsubscribe(smtp, template):
    owner = UserFactory()
    queue_account_email(template, owner)
    email = EmailLog.objects.get(template_name=template, user=owner)

    message = sent_headers(smtp, email)

    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


def test_a_critical_notification_carries_no_unsubscribe():
    owner = UserFactory()
    notification = services.notify(
        owner,
        "account_activity",
        params={"title": "New login", "message": "From Paris."},
        channels=(IN_APP, EMAIL),
    )
    email = notification.emails.get()

    assert email.topic == ""
    assert unsubscribe.headers(email) == {}
    email.topic = "account_activity"  # even a topic naming a critical type makes no link
    assert unsubscribe.headers(email) == {}


def test_the_outbox_preview_shows_no_unsubscribe_link():
    email = paid(UserFactory()).emails.get()

    assert "List-Unsubscribe" not in render(email, with_secrets=False).extra_headers
    assert "List-Unsubscribe" in render(email, with_secrets=True).extra_headers


# The URL


def test_a_get_shows_what_would_stop_and_changes_nothing():
    owner = UserFactory()
    path = link_of(paid(owner).emails.get())
    mark = last_entry_id()

    response = Client().get(path)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Stop receiving emails about “Invoice paid”" in page and owner.email in page
    assert '<form method="post">' in page
    assert preferences.matrix(owner)["invoice_paid"]["email"] == "immediate"
    assert actions_after(mark) == []
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"


def test_a_one_click_post_switches_that_types_emails_off_and_is_audited_once():
    owner = UserFactory()
    path = link_of(paid(owner).emails.get())
    mark = last_entry_id()

    first, again = one_click(path), one_click(path)

    assert first.status_code == 200 and again.status_code == 200
    assert "You are unsubscribed" in first.content.decode()
    matrix = preferences.matrix(owner)
    assert matrix["invoice_paid"]["email"] == "off"
    assert matrix["invoice_paid"]["in_app"] == "immediate"
    assert matrix["invoice_sent"]["email"] == "immediate"  # that type only
    entry = only_entry(mark, "email.unsubscribed")
    assert (entry.resource_type, entry.resource_id) == ("user", str(owner.pk))
    assert entry.user_id == owner.pk
    assert entry.metadata == {"address": owner.email, "topic": "invoice_paid", "sender_id": None}
    assert path.removeprefix("/unsubscribe/").removesuffix("/") not in str(entry.path)
    # The next one reaches the feed, and no inbox.
    assert paid(owner).emails.count() == 0


def test_the_digest_link_stops_every_type_it_gathers_and_frees_what_waited():
    owner = UserFactory()
    preferences.set_matrix(
        owner, {"invoice_paid": {"email": "daily"}, "invoice_sent": {"email": "daily"}}
    )
    waiting = paid(owner)
    email = queue_email(
        "notification_digest",
        to=owner.email,
        context={"name": "Ada", "frequency": "daily", "count": 0, "groups": []},
        user=owner,
        topic="digest.daily",
    )

    response = one_click(link_of(email))

    assert response.status_code == 200
    assert "your daily notification digest" in response.content.decode()
    matrix = preferences.matrix(owner)
    assert (matrix["invoice_paid"]["email"], matrix["invoice_sent"]["email"]) == ("off", "off")
    waiting.refresh_from_db()
    assert waiting.digest == ""  # no digest will carry it; it is in the feed


@pytest.mark.parametrize("method", ["put", "delete", "patch", "options"])
def test_other_methods_are_refused(method):
    path = link_of(paid(UserFactory()).emails.get())

    response = getattr(Client(), method)(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"


def tampered(token: str) -> str:
    head, _, signature = token.rpartition(":")
    return f"{head}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}"


def test_a_tampered_a_foreign_or_a_malformed_token_is_a_400_and_changes_nothing():
    owner = UserFactory()
    token = link_of(paid(owner).emails.get()).split("/")[2]
    someone_else = UserFactory()
    forged = signing.dumps({"t": "invoice_paid", "u": someone_else.pk}, salt="another.purpose")
    critical = signing.dumps({"t": "account_activity", "u": owner.pk}, salt=unsubscribe.SALT)
    wrong_shape = signing.dumps(["invoice_paid", owner.pk], salt=unsubscribe.SALT)
    true_as_id = signing.dumps({"t": "invoice_paid", "u": True}, salt=unsubscribe.SALT)
    mark = last_entry_id()

    for bad in [
        tampered(token),
        forged,
        critical,
        wrong_shape,
        true_as_id,
        "x",
        "",
        "a/b/c",
        "%00",
        "%ED%A0%80",
    ]:
        for answer in (Client().get(f"/unsubscribe/{bad}/"), one_click(f"/unsubscribe/{bad}/")):
            assert answer.status_code == 400, bad
            assert "This link is not valid" in answer.content.decode()

    assert preferences.matrix(owner)["invoice_paid"]["email"] == "immediate"
    assert preferences.matrix(someone_else)["invoice_paid"]["email"] == "immediate"
    assert actions_after(mark) == []


def test_the_page_speaks_the_emails_language_and_ignores_one_it_does_not_know():
    owner = UserFactory(language="de")
    path = link_of(paid(owner).emails.get())
    odd = signing.dumps({"t": "invoice_paid", "u": owner.pk, "l": ["x"]}, salt=unsubscribe.SALT)

    german = Client(HTTP_ACCEPT_LANGUAGE="fr").get(path).content.decode()
    browser = Client(HTTP_ACCEPT_LANGUAGE="fr").get(f"/unsubscribe/{odd}/")

    assert '<html lang="de">' in german and "Abbestellen" in german
    assert browser.status_code == 200 and '<html lang="fr">' in browser.content.decode()


def test_a_token_of_an_account_since_deleted_is_a_404():
    owner = UserFactory()
    path = link_of(paid(owner).emails.get())
    owner.delete()

    assert one_click(path).status_code == 404
    assert Client().get(path).status_code == 404


def test_unsubscribing_is_throttled_per_client_ip(monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "unsubscribe": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)

    path = link_of(paid(UserFactory()).emails.get())

    answers = [one_click("/unsubscribe/x/").status_code for _ in range(4)]
    page = Client().get(path)
    elsewhere = Client(REMOTE_ADDR="203.0.113.5").get("/unsubscribe/x/")

    assert answers == [400, 400, 400, 429]
    assert page.status_code == 429
    assert elsewhere.status_code == 400
    # A mail provider's one-click POSTs of true tokens, from one shared address, all go through.
    assert [one_click(path).status_code for _ in range(5)] == [200] * 5


def test_the_token_never_reaches_a_log_line():
    path = link_of(paid(UserFactory()).emails.get())
    token = path.split("/")[2]
    record = logging.LogRecord("django.server", logging.INFO, "", 0, '"%s" 200', (path,), None)

    RedactSecrets().filter(record)

    assert token not in record.getMessage()
    assert "/unsubscribe/[redacted]" in record.getMessage()


def test_each_unsubscribe_of_two_users_is_their_own():
    ada, bob = UserFactory(), UserFactory()
    mark = last_entry_id()

    one_click(link_of(paid(ada).emails.get()))

    assert preferences.matrix(bob)["invoice_paid"]["email"] == "immediate"
    assert [e.resource_id for e in entries_after(mark, action="email.unsubscribed")] == [
        str(ada.pk)
    ]


def test_a_request_by_mail_is_applied_by_a_command_as_the_link_would():
    owner = UserFactory()
    email = paid(owner).emails.get()
    mailto = HEADER.fullmatch(unsubscribe.headers(email)["List-Unsubscribe"]).group(2)
    subject = unquote(mailto.partition("subject=")[2])
    out, err = io.StringIO(), io.StringIO()
    mark = last_entry_id()

    call_command("unsubscribe", subject, stdout=out)
    call_command("unsubscribe", subject, stdout=out)
    with pytest.raises(CommandError, match="1 of 1 refused"):
        call_command("unsubscribe", "unsubscribe forged", stderr=err)

    assert out.getvalue().splitlines() == [
        f"{owner.email}: unsubscribed from invoice_paid",
        f"{owner.email}: already unsubscribed from invoice_paid",
    ]
    assert "not a token of ours" in err.getvalue()
    assert preferences.matrix(owner)["invoice_paid"]["email"] == "off"
    assert actions_after(mark) == ["email.unsubscribed"]


@pytest.mark.parametrize("odd", ["a%0Ab", "%0A", "a/b%0A/c"])
def test_a_token_with_a_line_break_reaches_the_page_not_a_logged_404(odd):
    assert one_click(f"/unsubscribe/{odd}/").status_code == 400


def test_a_doubled_slash_still_hides_the_token_in_logs():
    path = link_of(paid(UserFactory()).emails.get())
    token = path.split("/")[2]
    line = f'"GET /unsubscribe//{token}/ HTTP/1.1" 400'
    record = logging.LogRecord("django.server", logging.INFO, "", 0, line, (), None)

    RedactSecrets().filter(record)

    assert token not in record.getMessage()


def test_the_deploy_check_warns_of_links_that_are_not_https(settings):
    settings.APP_BASE_URL = "http://invoices.example.com"
    warned = [message.id for message in check_links_are_https(None)]
    settings.APP_BASE_URL = BASE_URL

    assert warned == ["emails.W001"]
    assert check_links_are_https(None) == []


@pytest.mark.django_db(transaction=True)
def test_one_click_posts_at_once_unsubscribe_and_audit_once(race):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent writers; SQLite serialises them")
    owner = UserFactory()
    wanted = unsubscribe.read_token(link_of(paid(owner).emails.get()).split("/")[2])
    mark = last_entry_id()

    changed = race(lambda: unsubscribe.unsubscribe(wanted), 4)

    assert sorted(changed) == [False, False, False, True]
    assert actions_after(mark) == ["email.unsubscribed"]
