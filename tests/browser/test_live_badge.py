"""`/notifications` in a real browser, served by daphne as in production: its unread badge goes
up when an invoice is paid in another session, pushed over the WebSocket, without a reload."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import global_settings
from django.db import connection
from playwright.sync_api import expect

from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.billing.models import Invoice, Payment
from invoicegen.billing.tests.factories import invoice_in_status
from notifications import services
from notifications.models import Notification
from notifications.tests.test_realtime_server import daphne  # noqa: F401 (the fixture, found by its name)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server_url(request) -> str:
    """A daphne process on the test database and the Redis channel layer (skipped without
    them)."""
    return f"http://127.0.0.1:{request.getfixturevalue('daphne')}"


@pytest.fixture
def owner(settings):
    """A user whose password daphne can check: hashed as in production, not by the suite's
    fast hasher, which daphne's settings do not list."""
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    return UserFactory()


def sent_invoice(user) -> Invoice:
    """Made in a thread of its own: Playwright runs an event loop in this one, beside which the
    pushes after commit (async_to_sync) refuse to run."""

    def make():
        try:
            return invoice_in_status(Invoice.Status.SENT, user=user)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(make).result()


def pay_in_another_session(browser, server_url: str, invoice: Invoice) -> int:
    """The owner signs in again in another browser session and pays the invoice in full
    through the API; the answer's status."""
    session = browser.new_context(base_url=server_url)
    try:
        login = session.request.post(
            "/api/auth/login/", data={"email": invoice.user.email, "password": PASSWORD}
        )
        paid = session.request.post(
            f"/api/invoices/{invoice.pk}/payments/",
            data={"amount": str(invoice.total), "method": Payment.Method.CARD},
            headers={"Authorization": f"Token {login.json()['token']}"},
        )
        return paid.status
    finally:
        session.close()


def is_resumed(payload: str) -> bool:
    return json.loads(payload)["type"] == "resumed"


def sign_in(page, server_url: str, user) -> None:
    """Through the page's form; back once its WebSocket is connected and caught up, so that
    what happens next reaches the page as a push."""
    page.goto(f"{server_url}/notifications")
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    with page.expect_websocket() as opened:
        page.click("#sign-in")
    opened.value.wait_for_event("framereceived", predicate=is_resumed)


def test_the_badge_goes_up_live_when_an_invoice_is_paid_in_another_session(
    server_url, owner, browser, page
):
    invoice = sent_invoice(owner)
    unread = services.unread_count(owner)
    assert unread > 0  # finalized and sent: the badge has a count to begin with

    sign_in(page, server_url, owner)
    badge = page.locator("#unread-badge")
    expect(badge).to_have_text(str(unread))
    page.evaluate("window.__noReload = 1")

    assert pay_in_another_session(browser, server_url, invoice) == 201

    expect(badge).to_have_text(str(unread + 1), timeout=5000)
    expect(page.locator("#notifications li").first).to_contain_text(invoice.number)
    assert page.evaluate("window.__noReload") == 1
    assert "token" not in page.url


def test_a_page_that_lost_its_connection_catches_up_when_it_is_back(
    server_url, owner, browser, page
):
    invoice = sent_invoice(owner)
    unread = services.unread_count(owner)
    sign_in(page, server_url, owner)
    tickets = "**/api/notifications/ws-ticket/"
    page.route(tickets, lambda route: route.abort())  # it stays away until the payment is made

    page.evaluate("socket.close()")
    expect(page.locator("#reconnecting")).to_be_visible()
    assert pay_in_another_session(browser, server_url, invoice) == 201
    page.unroute(tickets)

    expect(page.locator("#unread-badge")).to_have_text(str(unread + 1), timeout=15000)
    expect(page.locator("#reconnecting")).to_be_hidden()
    items = page.locator("#notifications li")
    expect(items.first).to_contain_text(invoice.number)
    assert items.count() == Notification.objects.filter(user=owner).count()  # none twice
