"""While the database is unreachable (a restart, a failover), clients are told to come back:
JSON 503 with Retry-After on the API, a plain 503 page elsewhere; never a traceback."""

import socket

import pytest
from django.db import connection
from django.test import Client, RequestFactory

from audit.roles import reconnected
from invoicegen.core.errors import server_error

pytestmark = pytest.mark.django_db(transaction=True)  # the connection is closed and reopened


def database_unreachable():
    """The connection's server is a loopback port where nothing listens, as during a restart."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return reconnected(connection, HOST="127.0.0.1", PORT=port)


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("an unreachable server needs a database on a server (PostgreSQL)")


@pytest.mark.parametrize(
    "method, path",
    [("get", "/api/invoices/"), ("post", "/api/auth/login/"), ("get", "/api/audit/logs/")],
)
def test_api_answers_json_503_with_retry_after_while_the_database_is_down(postgresql, method, path):
    client = Client(raise_request_exception=False, HTTP_AUTHORIZATION="Token whatever")
    with database_unreachable():
        response = getattr(client, method)(path, {}, content_type="application/json")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response.json() == {
        "detail": "The service is briefly unavailable. Please try again in a few seconds."
    }


@pytest.mark.parametrize("path", ["/admin/", "/downloads/abcdefghijklmnop/"])
def test_pages_answer_a_plain_503_page_while_the_database_is_down(postgresql, path, admin_user):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)  # the admin reads its session from the database
    with database_unreachable():
        response = client.get(path)

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    assert "Back in a moment" in response.content.decode()


def test_the_database_back_is_served_again_without_a_restart(postgresql, user, client_for):
    api = client_for(user)
    api.raise_request_exception = False
    with database_unreachable():
        assert api.get("/api/invoices/").status_code == 503

    assert api.get("/api/invoices/").status_code == 200


@pytest.mark.parametrize(
    "path, content_type", [("/api/invoices/", "application/json"), ("/admin/", "text/html")]
)
def test_any_other_failure_is_a_500_in_the_shape_of_its_path(path, content_type):
    request = RequestFactory().get(path)
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = server_error(request)

    assert response.status_code == 500
    assert response["Content-Type"].startswith(content_type)
    assert "Retry-After" not in response


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM no_such_table", "SELEC 1"],
    ids=["a missing table (a migration not run)", "a statement the database refuses"],
)
def test_a_database_error_that_is_not_an_outage_is_a_500_not_a_503(sql):
    request = RequestFactory().get("/api/invoices/")
    response = None
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            cursor.fetchall()
    except Exception:
        response = server_error(request)

    assert response.status_code == 500
    assert "Retry-After" not in response
