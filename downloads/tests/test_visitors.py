"""Who opens a link's page without being a person reading it."""

import pytest
from django.test import RequestFactory

from downloads import visitors

BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131 Safari/537",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
SCANNERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 BingPreview/1.0b",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Barracuda Sentinel (EE)",
    "Proofpoint URL Defense",
    "Mimecast Safe Links",
    "Google-Safety; (+https://developers.google.com/safe-browsing)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "WhatsApp/2.23.20.0",
    "TelegramBot (like TwitterBot)",
    "python-requests/2.32.3",
    "curl/8.5.0",
]


def request(method: str = "GET", **headers):
    return RequestFactory().generic(method, "/downloads/x/", **headers)


@pytest.mark.parametrize("agent", BROWSERS)
def test_a_browser_opening_the_page_is_a_person(agent):
    assert not visitors.is_automated(request(HTTP_USER_AGENT=agent))


@pytest.mark.parametrize("agent", SCANNERS)
def test_a_known_scanner_or_previewer_is_automated_in_any_case(agent):
    assert visitors.is_automated(request(HTTP_USER_AGENT=agent))
    assert visitors.is_automated(request(HTTP_USER_AGENT=agent.upper()))


def test_a_request_without_a_user_agent_is_automated():
    assert visitors.is_automated(request())


def test_head_is_automated():
    assert visitors.is_automated(request("HEAD", HTTP_USER_AGENT=BROWSERS[0]))


@pytest.mark.parametrize(
    "headers",
    [{"HTTP_SEC_PURPOSE": "prefetch"}, {"HTTP_SEC_PURPOSE": "prefetch;prerender"},
     {"HTTP_PURPOSE": "prefetch"}, {"HTTP_PURPOSE": "Prefetch"}],
)  # fmt: skip
def test_a_prefetch_is_automated(headers):
    assert visitors.is_automated(request(HTTP_USER_AGENT=BROWSERS[0], **headers))
