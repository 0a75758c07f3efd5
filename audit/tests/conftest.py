import pytest

from audit import archive, services
from audit.tests import helpers
from audit.tests.factories import AuditLogFactory
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


@pytest.fixture
def old_sealed_entries(db):
    """Old entries, sealed, and their month archived (the beat does it nightly)."""
    AuditLogFactory.create_batch(3)
    helpers.age_entries(days=400)
    checkpoint = services.seal_audit_log()
    archive.archive_ended_months()
    return checkpoint
