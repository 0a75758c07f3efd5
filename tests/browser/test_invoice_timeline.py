"""An invoice's timeline after real visits: the invoice sent twice, the client opening the
emailed link in their browser (a view counts), the owner opening a preview (none counts) and the
client downloading the PDF. The owner's timeline in the API lists both sends, exactly one view
(with the client's IP address and browser) and the download, in order; staff see the same rows
in the admin's invoice page."""

import pytest
from django.conf import settings as django_settings
from django.core import mail

from downloads.tests.helpers import LINK
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing import services
from invoicegen.billing.models import Invoice
from tests.browser.test_invoice_views import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_ADDRESS = "ap@globex.example"  # where emailed_invoice_link sends it
SECOND_ADDRESS = "billing@globex.example"
CLIENT_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0 GlobexAccounts"
# Where the client's browser is, as the timeline tells it: its address and user agent.
CLIENT = ("127.0.0.1", CLIENT_AGENT)


def live(url: str, live_server) -> str:
    """A link the product wrote for APP_BASE_URL, on the live server instead."""
    return live_server.url + url.removeprefix(django_settings.APP_BASE_URL)


def send_again(invoice: Invoice, to: str, live_server) -> str:
    """Send the invoice to `to`; the download link in that email, on the live server."""
    services.send_invoice(invoice, to=to, actor=invoice.user)
    [body] = [message.body for message in mail.outbox if message.to == [to]]
    return live(LINK.search(body).group(0), live_server)


def view_count(invoice: Invoice) -> int:
    return Invoice.objects.get(pk=invoice.pk).view_count


def admin_timeline(page) -> list[dict]:
    """The rows of the admin page's timeline table, by column."""
    columns = ["when", "what", "details", "ip_address", "user_agent"]
    rows = page.locator("table.invoice-timeline tbody tr")
    return [
        dict(zip(columns, row.locator("td").all_inner_texts(), strict=True)) for row in rows.all()
    ]


def test_the_timeline_shows_both_sends_the_clients_view_and_download(
    emailed_invoice_link, live_server, browser, page, client_for
):
    invoice, _ = emailed_invoice_link
    owner = client_for(invoice.user)
    link = send_again(invoice, SECOND_ADDRESS, live_server)

    with browser.new_context(user_agent=CLIENT_AGENT) as client_context:
        client_page = client_context.new_page()
        client_page.goto(link)
        assert invoice.number in client_page.locator("h1").inner_text()
        assert view_count(invoice) == 1

        # A link of its own, so that the link's half hour of counting one view cannot hide a
        # preview that counted.
        answer = owner.post(f"/api/invoices/{invoice.pk}/download-links/", {}, format="json")
        assert answer.status_code == 201
        with browser.new_context() as owner_context:
            owner_page = owner_context.new_page()
            owner_page.goto(live(answer.json()["preview_url"], live_server))
            assert invoice.number in owner_page.locator("h1").inner_text()
        assert view_count(invoice) == 1

        with client_page.expect_download() as download:
            client_page.click("#download")
        assert download.value.suggested_filename == f"{invoice.number}.pdf"

    timeline = owner.get(f"/api/invoices/{invoice.pk}/timeline/").json()
    assert timeline["next"] is None
    items = timeline["results"]
    assert [item["type"] for item in items] == [
        "created", "finalized", "sent", "sent", "viewed", "downloaded"
    ]  # fmt: skip
    assert [item["to"] for item in items[2:4]] == [FIRST_ADDRESS, SECOND_ADDRESS]
    assert [(item["ip_address"], item["user_agent"]) for item in items[4:]] == [CLIENT] * 2

    staff = UserFactory(is_staff=True, is_superuser=True)
    sign_in(page, staff, live_server.url)
    page.goto(f"{live_server.url}/admin/billing/invoice/{invoice.pk}/change/")
    rows = admin_timeline(page)
    assert [row["what"] for row in rows] == [item["type"] for item in items]
    first_send, second_send = rows[2:4]
    assert FIRST_ADDRESS in first_send["details"]
    assert SECOND_ADDRESS in second_send["details"]
    assert [(row["ip_address"], row["user_agent"]) for row in rows[4:]] == [CLIENT] * 2
