"""`/notifications`: one page for everyone, its data read by its script through the API."""

import pytest

pytestmark = pytest.mark.django_db

PAGE = "/notifications"


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}/"])
def test_the_page_answers_anyone_with_the_badge_and_the_sign_in_form(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    assert 'id="unread-badge"' in html
    assert '<form id="login"' in html
    assert "sessionStorage" in html


def test_the_page_speaks_the_browsers_language(client):
    response = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="de")

    assert "<h1>Benachrichtigungen" in response.content.decode()
    assert response["Content-Language"] == "de"
    assert "Accept-Language" in response["Vary"]


def test_head_answers_the_headers_of_get_without_a_body(client):
    response = client.head(PAGE)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response.content == b""


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_other_methods_are_not_allowed(client, method):
    response = getattr(client, method)(PAGE)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
