import os
import shutil

import pytest
from django.core import mail

from downloads.tests.helpers import LINK
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.tests.factories import finalized_invoice

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's sync API runs an event loop in this thread; the Django calls the tests make
# around it are ordinary synchronous ones.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser():
    """Started and stopped per module: while it runs, so does Playwright's event loop in this
    thread, and the tests after these that call async code from sync code (async_to_sync: the
    WebSocket tests, the pushes after commit) would fail beside it."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def emailed_invoice_link(live_server, settings):
    """(invoice, url): Jane Issuer's invoice sent to ap@globex.example, and the download link
    in that email, pointing at the live server."""
    settings.APP_BASE_URL = "https://invoices.example"
    invoice = finalized_invoice(
        user=UserFactory(name="Jane Issuer"), client_email="ap@globex.example"
    )
    services.send_invoice(invoice)  # commits: the client's email is sent at once
    [body] = [message.body for message in mail.outbox if message.to == ["ap@globex.example"]]
    link = LINK.search(body).group(0)
    return invoice, live_server.url + link.removeprefix(settings.APP_BASE_URL)


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()
