"""Views without tracking pixels: the client opening the emailed link in a real browser counts
one view of the invoice; its owner, signed in, opening the same page counts none."""

import datetime

import pytest
from django.conf import settings as django_settings
from django.test import Client

from downloads.models import DownloadEvent
from downloads.tests.helpers import age_views, views_of
from invoicegen.billing.models import Invoice
from notifications.models import Notification

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in(page, user, base_url: str) -> None:
    """The owner's browser with a session of theirs, as after signing in."""
    client = Client()
    client.force_login(user)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    cookie = {"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}
    page.context.add_cookies([cookie])


def test_the_clients_visit_counts_a_view_and_the_owners_preview_does_not(
    emailed_invoice_link, live_server, browser, page
):
    invoice, url = emailed_invoice_link

    page.goto(url)
    assert invoice.number in page.locator("h1").inner_text()
    invoice.refresh_from_db()
    assert invoice.view_count == 1
    assert invoice.first_viewed_at is not None
    assert Notification.objects.filter(user=invoice.user, type="invoice_viewed").count() == 1

    # Past the half hour in which the link's views count once, so that only ownership decides.
    [view] = DownloadEvent.objects.filter(kind=DownloadEvent.Kind.VIEWED)
    age_views(view.token, ago=datetime.timedelta(hours=1))

    owners = browser.new_context()
    try:
        owner_page = owners.new_page()
        sign_in(owner_page, invoice.user, live_server.url)
        owner_page.goto(url)
        assert invoice.number in owner_page.locator("h1").inner_text()
    finally:
        owners.close()

    assert Invoice.objects.get(pk=invoice.pk).view_count == 1
    assert views_of(view.token).count() == 1
