"""API tokens expire when unused for AUTH_TOKEN_TTL_DAYS; each use slides the expiry on."""

import datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.tests.helpers import migrate_to_the_latest
from invoicegen.accounts import services, tasks
from invoicegen.accounts.models import AuthToken
from invoicegen.accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

ME = "/api/auth/me/"


def last_used(days=0, minutes=0) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days, minutes=minutes)


def set_last_used(moment: datetime.datetime) -> None:
    AuthToken.objects.update(last_used_at=moment)


def test_a_new_token_counts_as_used_when_it_is_issued(anon_client, user):
    before = timezone.now()

    response = anon_client.post("/api/auth/login/", {"email": user.email, "password": PASSWORD})

    assert response.status_code == 200
    assert AuthToken.objects.get().last_used_at >= before


def test_a_token_unused_for_longer_than_the_ttl_gets_401_and_is_deleted(api, settings):
    settings.AUTH_TOKEN_TTL_DAYS = 30
    set_last_used(last_used(days=30, minutes=1))

    response = api.get(ME)

    assert response.status_code == 401
    assert response.json() == {"detail": "Token expired."}
    assert not AuthToken.objects.exists()
    assert api.get(ME).json() == {"detail": "Invalid token."}


def test_a_token_used_within_the_ttl_works_and_is_renewed(api, settings):
    settings.AUTH_TOKEN_TTL_DAYS = 30
    set_last_used(last_used(days=29, minutes=59))
    before = timezone.now()

    assert api.get(ME).status_code == 200

    assert AuthToken.objects.get().last_used_at >= before


def test_the_expiry_slides_with_each_use(api, settings):
    """Used every 20 days, a token keeps working long after the 30 days of its TTL."""
    settings.AUTH_TOKEN_TTL_DAYS = 30
    twenty_days = datetime.timedelta(days=20)
    for _ in range(3):
        AuthToken.objects.update(  # 20 days pass
            created_at=F("created_at") - twenty_days, last_used_at=F("last_used_at") - twenty_days
        )
        assert api.get(ME).status_code == 200

    token = AuthToken.objects.get()
    assert token.created_at < last_used(days=59)
    assert token.last_used_at > last_used(minutes=1)


def test_the_ttl_follows_the_setting(api, settings):
    settings.AUTH_TOKEN_TTL_DAYS = 1
    set_last_used(last_used(days=1, minutes=1))

    assert api.get(ME).status_code == 401


def test_a_token_used_a_minute_ago_is_not_written_again(api):
    moment = last_used(minutes=1)
    set_last_used(moment)

    with CaptureQueriesContext(connection) as queries:
        assert api.get(ME).status_code == 200

    assert not [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert AuthToken.objects.get().last_used_at == moment


def test_two_requests_renewing_one_token_write_it_once(user):
    services.create_auth_token(user)
    set_last_used(last_used(minutes=10))
    first, second = AuthToken.objects.get(), AuthToken.objects.get()  # as two requests load it

    services.use_auth_token(first)
    renewed = AuthToken.objects.get().last_used_at
    services.use_auth_token(second)

    assert AuthToken.objects.get().last_used_at == renewed


def test_only_the_requesting_token_is_deleted_when_it_expired(user, client_for):
    stale, fresh = client_for(user), client_for(user)
    stale_token, fresh_token = AuthToken.objects.order_by("pk")
    AuthToken.objects.filter(pk=stale_token.pk).update(last_used_at=last_used(days=31))

    assert stale.get(ME).status_code == 401

    assert list(AuthToken.objects.all()) == [fresh_token]
    assert fresh.get(ME).status_code == 200


def test_the_purge_deletes_the_expired_tokens_only(user, client_for):
    client_for(user), client_for(user)
    expired, kept = AuthToken.objects.order_by("pk")
    AuthToken.objects.filter(pk=expired.pk).update(last_used_at=last_used(days=31))
    AuthToken.objects.filter(pk=kept.pk).update(last_used_at=last_used(days=29))

    assert services.delete_expired_auth_tokens() == 1

    assert list(AuthToken.objects.all()) == [kept]


def test_the_purge_task_runs_the_purge(user, client_for):
    client_for(user)
    set_last_used(last_used(days=31))

    tasks.purge_expired_auth_tokens.delay()

    assert not AuthToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_existing_tokens_as_used_when_it_runs():
    before, after = ("accounts", "0001_initial"), ("accounts", "0002_authtoken_last_used_at")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old_apps = executor.loader.project_state([before]).apps
    user = old_apps.get_model("accounts", "User").objects.create(email="old@example.com")
    old_apps.get_model("accounts", "AuthToken").objects.create(user_id=user.pk, key_hash="0" * 64)
    migrated_at = timezone.now()

    executor.loader.build_graph()
    executor.migrate([after])

    assert AuthToken.objects.get().last_used_at >= migrated_at
    migrate_to_the_latest(executor)
