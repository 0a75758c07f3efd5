"""A person signs up and resets their password by clicking the emailed links in a real browser,
on the pages this server serves when no SPA does (invoicegen/accounts/views.py)."""

import re

import pytest
from django.core import mail

from invoicegen.accounts.models import User
from invoicegen.accounts.services import request_password_reset, sign_up
from invoicegen.accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-brand-new-Passphrase-42"


def _opened_link(live_server, page, settings, email_page: str):
    """Opens the one link to `email_page` in the emails sent; they point at this server."""
    pattern = re.compile(re.escape(f"{settings.APP_BASE_URL}/{email_page}?") + r"[^\s\"'<>]+")
    [link] = {link for message in mail.outbox for link in pattern.findall(message.body)}
    page.goto(link)


@pytest.fixture
def links_to_this_server(live_server, settings):
    settings.APP_BASE_URL = live_server.url


@pytest.mark.usefixtures("links_to_this_server")
def test_a_person_verifies_their_email_through_the_link(live_server, page, settings):
    user = sign_up(email="alice@example.com", password=PASSWORD)  # commits: emails sent at once
    _opened_link(live_server, page, settings, "verify-email")
    assert page.locator("h1").inner_text() == "Verify your email"

    page.click("#verify")

    assert page.locator("h1").inner_text() == "Email verified"
    user.refresh_from_db()
    assert user.email_verified


@pytest.mark.usefixtures("links_to_this_server")
def test_a_person_resets_their_password_through_the_link(live_server, page, settings, user):
    request_password_reset(email=user.email)
    _opened_link(live_server, page, settings, "reset-password")

    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD + "!")
    page.click("#reset")
    assert "The two passwords differ." in page.content()
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.click("#reset")

    assert page.locator("h1").inner_text() == "Password changed"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert User.objects.get(pk=user.pk).check_password(PASSWORD) is False
