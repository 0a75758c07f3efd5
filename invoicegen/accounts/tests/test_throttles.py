"""Login throttles per client IP and per attempted account, on the API and on the admin."""

import pytest
from django.test import Client, RequestFactory, override_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from emails.tests.helpers import unreachable_redis_caches
from invoicegen.accounts.tests.factories import PASSWORD, UserFactory
from invoicegen.accounts.throttles import LoginAccountThrottle

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates: DRF copies DEFAULT_THROTTLE_RATES into the class when it is
    defined, so the copy is what to patch."""

    def set_rates(**scopes):
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **scopes}
        )

    return set_rates


@pytest.fixture
def staff():
    return UserFactory(is_staff=True)


def assert_throttled(response):
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60


def api_login(email, password=PASSWORD, *, ip) -> str:
    response = APIClient().post(LOGIN, {"email": email, "password": password}, REMOTE_ADDR=ip)
    if response.status_code == 429:
        assert_throttled(response)
        assert "detail" in response.json()
    return {200: "in", 400: "refused", 429: "throttled"}[response.status_code]


def admin_login(email, password=PASSWORD, *, ip) -> str:
    response = Client().post(ADMIN_LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)
    if response.status_code == 429:
        assert_throttled(response)
        assert "Too many login attempts" in response.text
    return {302: "in", 200: "refused", 429: "throttled"}[response.status_code]


@pytest.fixture(params=[api_login, admin_login], ids=["api", "admin"])
def log_in(request):
    return request.param


# --- per account -------------------------------------------------------------------------------


def test_logins_to_one_account_are_throttled_from_any_ip(log_in, rates, staff):
    rates(login_account="3/min")

    outcomes = [log_in(staff.email, ip=f"203.0.113.{n}") for n in range(1, 5)]

    assert outcomes == ["in", "in", "in", "throttled"]
    assert log_in(UserFactory(is_staff=True).email, ip="203.0.113.4") == "in"


def test_the_api_and_the_admin_share_the_account_throttle(rates, staff):
    rates(login_account="3/min")
    assert api_login(staff.email, ip="203.0.113.1") == "in"
    assert admin_login(staff.email, ip="203.0.113.2") == "in"
    assert api_login(staff.email, ip="203.0.113.3") == "in"

    assert admin_login(staff.email, ip="203.0.113.4") == "throttled"
    assert api_login(staff.email, ip="203.0.113.5") == "throttled"


def test_the_account_throttle_counts_the_email_whatever_its_case(log_in, rates, staff):
    rates(login_account="2/min")
    assert log_in(staff.email.upper(), ip="203.0.113.1") == "in"
    assert log_in(f" {staff.email.title()}", ip="203.0.113.2") == "in"

    assert log_in(staff.email, ip="203.0.113.3") == "throttled"


def test_an_unknown_email_is_throttled_alike(log_in, rates, staff):
    rates(login_account="2/min")

    def outcomes(email):
        return [log_in(email, "wrong", ip=f"203.0.113.{n}") for n in range(3)]

    assert (
        outcomes(staff.email)
        == outcomes("nobody@example.com")
        == [
            "refused",
            "refused",
            "throttled",
        ]
    )


def test_the_account_throttle_keeps_no_email_in_the_cache():
    request = RequestFactory().post(ADMIN_LOGIN, {"username": "Ada@Example.com", "password": "x"})

    key = LoginAccountThrottle().get_cache_key(request, None)

    assert key.startswith("throttle_login_account_")
    assert "ada" not in key.lower()
    assert "example" not in key.lower()


# --- per IP ----------------------------------------------------------------------------------


def test_logins_from_one_ip_are_throttled(log_in, rates):
    rates(auth="3/min")

    outcomes = [log_in(f"someone{n}@example.com", ip="203.0.113.7") for n in range(4)]

    assert outcomes == ["refused", "refused", "refused", "throttled"]
    assert log_in("someone3@example.com", ip="198.51.100.9") == "refused"


def test_the_api_and_the_admin_share_the_ip_throttle(rates):
    rates(auth="3/min")
    assert api_login("a@example.com", ip="203.0.113.7") == "refused"
    assert admin_login("b@example.com", ip="203.0.113.7") == "refused"
    assert api_login("c@example.com", ip="203.0.113.7") == "refused"

    assert admin_login("d@example.com", ip="203.0.113.7") == "throttled"
    assert api_login("e@example.com", ip="203.0.113.7") == "throttled"


def test_the_admin_login_page_itself_is_not_throttled(rates):
    rates(auth="1/min", login_account="1/min")

    statuses = [Client().get(ADMIN_LOGIN, REMOTE_ADDR="203.0.113.7").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


# --- the cache down --------------------------------------------------------------------------


def test_logins_go_through_when_the_cache_is_down(rates, staff, caplog):
    rates(auth="1/min", login_account="1/min")

    with override_settings(CACHES=unreachable_redis_caches()):
        api = [api_login(staff.email, ip="203.0.113.7") for _ in range(2)]
        admin = [admin_login(staff.email, ip="203.0.113.7") for _ in range(2)]

    assert api == admin == ["in", "in"]
    assert "throttle login_account skipped: its cache is unavailable" in caplog.text
