"""The outbox's page shows an email's HTML as it will be sent, inside a sandboxed frame."""

import pytest
from django.urls import reverse

from emails.tests.factories import EmailLogFactory
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from tests.browser.dashboard import log_into_admin

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_outbox_emails_html_renders_in_its_sandboxed_frame(live_server, page):
    email = EmailLogFactory(
        context={"name": "Grace", "title": "Planned maintenance", "message": "Back by noon."}
    )
    admin = UserFactory(is_staff=True, is_superuser=True)
    log_into_admin(page, live_server.url, admin.email, PASSWORD)

    page.goto(live_server.url + reverse("admin:emails_emaillog_change", args=[email.pk]))

    assert page.locator("iframe").get_attribute("sandbox") == ""
    text = page.frame_locator("iframe").locator("body").inner_text()
    assert "Back by noon." in text
    assert "Hello Grace," in text
    assert "<p>" not in text  # rendered as HTML, not shown as its source
