"""Schemathesis against the live schema (/api/schema/ of the WSGI application), as a user and as
a staff member, on a database with an invoice in each status, notifications and audit entries:
no 5xx, no status code the schema does not declare, no invalid request accepted and no valid
one refused."""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.throttling import SimpleRateThrottle

from audit.tests.factories import AuditLogFactory
from downloads.services import issue_download_token
from invoicegen.accounts.services import create_auth_token
from invoicegen.accounts.tests.factories import UserFactory
from invoicegen.billing.models import Invoice
from invoicegen.billing.tests.factories import invoice_in_status
from invoicegen.core.api import MAX_ID
from notifications.tests.factories import NotificationFactory

pytestmark = pytest.mark.django_db

CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "content_type_conformance",
    "response_schema_conformance",
]
# Well-formed requests these operations refuse with a 400 for what no schema can state:
# credentials, one-time tokens, Django's password validators, a payment past the balance,
# lines whose total exceeds the largest amount, a logo whose bytes are not the image it names.
REFUSED_BEYOND_THE_SCHEMA = {
    "include-path-regex": (
        "^/api/auth/(login|signup|password/change|password/reset/confirm|verify-email)/$"
        "|^/api/invoices/([{]id[}]/(payments/)?)?$|^/api/business-profile/$"
    ),
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]
        }
    },
}
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": 20},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECK_NAMES}},
        "operations": [REFUSED_BEYOND_THE_SCHEMA],
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)


@pytest.fixture
def in_the_test_transaction():
    """The requests run in the test's transaction, as with Django's test client, which also
    stops Django from closing the connection at each request (it would end that transaction)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(params=["user", "staff"])
def caller(request, settings, monkeypatch, in_the_test_transaction):
    """The caller and the ids of its objects by path parameter. Throttles are lifted: the run
    is about what each answer says, and a 429 for most of it would test nothing."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "100000/min"),
    )
    user = UserFactory(is_staff=request.param == "staff")
    invoices = [invoice_in_status(status, user=user) for status in Invoice.Status.values]
    links = [
        issue_download_token("invoice", invoice.pk, created_by=user)[0] for invoice in invoices
    ]
    notifications = NotificationFactory.create_batch(3, user=user)
    AuditLogFactory.create_batch(3, actor=user)
    return {
        "user": user,
        "ids": {
            "/api/invoices/{id}/": {
                "id": [invoice.pk for invoice in invoices],
                "link_id": [link.pk for link in links],
            },
            "/api/notifications/{id}/": {"id": [n.pk for n in notifications]},
            "/api/audit/user/{user_id}/": {"user_id": [user.pk]},
        },
    }


def aim_at_own_objects(case, ids: dict) -> None:
    """An even generated id is swapped for one of the caller's objects, so that operations
    are also run past their 404; an odd, malformed or out of range one (0, or past a bigint
    as the schema's int64 says) stays, to be refused."""
    for prefix, by_parameter in ids.items():
        if not case.operation.path.startswith(prefix):
            continue
        for name, own in by_parameter.items():
            value = str(case.path_parameters.get(name))
            if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID:
                number = int(value)
                if number % 2 == 0:
                    case.path_parameters[name] = own[number // 2 % len(own)]


@schema.parametrize()
@hypothesis_settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_schema_says(case, caller):
    aim_at_own_objects(case, caller["ids"])
    # A fresh token for each request: logging out or changing the password revokes it.
    token = create_auth_token(caller["user"])
    case.call_and_validate(headers={"Authorization": f"Token {token}"})
