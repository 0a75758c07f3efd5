import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from invoicegen import celery_app
from invoicegen.accounts.tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _isolated_run(settings):
    """Each test starts with empty throttle counters and runs Celery tasks in process; tests
    that need a real worker start one themselves."""
    cache.clear()
    celery_app.conf.task_always_eager = True
    yield
    cache.clear()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client authenticated as the given user (DRF token auth, as a SPA would be)."""

    def make(user):
        from invoicegen.accounts.services import create_auth_token

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {create_auth_token(user)}")
        return client

    return make


@pytest.fixture
def api(user, client_for):
    return client_for(user)
