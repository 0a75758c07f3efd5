import pytest

from audit.tests import helpers
from invoicegen.accounts.tests.factories import UserFactory


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True)


@pytest.fixture
def staff_api(staff, client_for):
    return client_for(staff)


@pytest.fixture
def db_superuser(db):
    """The append-only triggers dropped for the test, as a database superuser could. The drop
    is DDL inside the test's transaction, which both SQLite and PostgreSQL roll back; they are
    reinstalled at the end all the same, so that no later test depends on that."""
    helpers.drop_triggers()
    yield
    helpers.install_triggers()
