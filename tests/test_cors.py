"""An SPA on its own origin calls the API from the browser (django-cors-headers): preflights,
credentials, the headers it may read; and a session's unsafe request from that origin passes
Django's CSRF origin check only where it is trusted."""

import pytest
from django.test.utils import override_settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SPA = "https://app.example.com"
OTHER = "https://evil.example"


@pytest.fixture(autouse=True)
def _spa(settings):
    settings.CORS_ALLOWED_ORIGINS = [SPA]
    settings.CSRF_TRUSTED_ORIGINS = [SPA]


def preflight(client, origin: str, path: str = "/api/invoices/"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, x-csrftoken",
    )


def test_a_preflight_from_the_spa_is_answered_with_credentials():
    response = preflight(APIClient(), SPA)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SPA
    assert response["Access-Control-Allow-Credentials"] == "true"
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-csrftoken"} <= allowed
    assert "POST" in response["Access-Control-Allow-Methods"]


def test_another_origin_gets_no_cors_headers():
    response = preflight(APIClient(), OTHER)

    assert "Access-Control-Allow-Origin" not in response


def test_only_the_api_answers_cross_origin_calls():
    assert "Access-Control-Allow-Origin" not in preflight(APIClient(), SPA, "/admin/login/")


def test_a_token_call_from_the_spa_can_read_the_request_id_and_retry_after(api):
    response = api.get("/api/invoices/", HTTP_ORIGIN=SPA)

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SPA
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "x-request-id"} <= exposed


def session_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    return client


def test_a_session_request_from_the_spa_passes_the_csrf_origin_check(user):
    client = session_client(user)
    token = client.cookies["csrftoken"].value

    response = client.patch(
        "/api/auth/me/", {"name": "Grace"}, format="json", HTTP_ORIGIN=SPA, HTTP_X_CSRFTOKEN=token
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SPA


def test_a_session_request_from_an_untrusted_origin_is_refused(user):
    client = session_client(user)
    token = client.cookies["csrftoken"].value

    with override_settings(CSRF_TRUSTED_ORIGINS=[]):
        response = client.patch(
            "/api/auth/me/", {"name": "Mallory"}, format="json", HTTP_ORIGIN=OTHER,
            HTTP_X_CSRFTOKEN=token,
        )  # fmt: skip

    assert response.status_code == 403
    user.refresh_from_db()
    assert user.name != "Mallory"
