import os
import shutil
import threading

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from audit import subjects
from emails.tests.helpers import RedisServer
from invoicegen import celery_app
from invoicegen.accounts.tests.factories import UserFactory
from tests.contract import served_contract


@pytest.fixture(scope="session", autouse=True)
def _flush_passes_the_audit_triggers():
    """Transactional tests end with Django's flush (TRUNCATE or DELETE of every table), which
    the append-only triggers refuse: lift them for the flush alone, in its transaction."""
    from django.db.backends.base.operations import BaseDatabaseOperations

    from audit import triggers

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        vendor = self.connection.vendor
        sql_list = [
            *triggers.uninstall_sql(vendor),
            *sql_list,
            *triggers.install_sql(vendor),
        ]
        return original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


@pytest.fixture(scope="session", autouse=True)
def _answers_keep_to_the_schema():
    """Each answer of the test clients (Django's and DRF's) is checked against the served
    schema (tests/contract.py), made once, before any test changes a setting."""
    from django.test import Client

    contract = served_contract()
    original = Client.request

    def request(self, **kwargs):
        response = original(self, **kwargs)
        contract.check(response.request["REQUEST_METHOD"], response.request["PATH_INFO"], response)
        return response

    Client.request = request
    yield
    Client.request = original


@pytest.fixture(autouse=True)
def _isolated_run(settings, tmp_path):
    """Each test starts with empty throttle counters, runs Celery tasks in process (tests that
    need a real worker start one themselves) and archives the trail to a folder of its own."""
    cache.clear()
    subjects.forget_keys()  # ids of a test rolled back are given again on SQLite
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "audit-archive"},
        },
    }
    celery_app.conf.task_always_eager = True
    # Real hashing costs ~0.2 s a user; the hasher is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AUDIT_STRICT_ACTIONS = True  # an unregistered action is a failing test
    # A delivery sends its own email only: rows a test left queued stay so (emails/tests/
    # test_batches.py takes several, and real workers run with the default).
    settings.EMAIL_SEND_BATCH = 1
    yield
    cache.clear()


@pytest.fixture
def race():
    """Run `work` in `count` threads released together (a barrier), each closing its own
    database connection; return their results, or raise the first error one of them hit."""

    def run(work, count: int) -> list:
        start = threading.Barrier(count)
        results, errors = [], []

        def racer():
            try:
                start.wait(timeout=10)
                results.append(work())
            except Exception as error:  # raised below, in the test's thread
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=racer) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        if errors:
            raise errors[0]
        return results

    return run


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def superuser(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def admin(client, superuser):
    """A Django test client signed in to the admin as a superuser."""
    client.force_login(superuser)
    return client


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


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of the test's own, to crash at will (never the machine's main Redis)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must run the broker tests")
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.kill()
