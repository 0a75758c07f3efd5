import datetime

import pytest
from django.conf import settings
from django.utils import timezone

from invoicegen.billing import tasks
from invoicegen.billing.models import Subscription
from invoicegen.billing.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def ended(days_ago: float, **fields):
    end = timezone.now() - datetime.timedelta(days=days_ago)
    return SubscriptionFactory(
        current_period_start=end - datetime.timedelta(days=30), current_period_end=end, **fields
    )


def current(**fields):
    return SubscriptionFactory(**fields)


def status_of(subscription) -> str:
    subscription.refresh_from_db()
    return subscription.status


def test_expire_subscriptions_expires_active_and_cancelled_ones_past_their_period():
    lapsed_active = ended(days_ago=1)
    lapsed_cancelled = ended(days_ago=0.01, status=Subscription.Status.CANCELLED)
    running = current()
    cancelled_but_paid_up = current(status=Subscription.Status.CANCELLED)

    expired = tasks.expire_subscriptions.delay().get()

    assert expired == 2
    assert status_of(lapsed_active) == Subscription.Status.EXPIRED
    assert status_of(lapsed_cancelled) == Subscription.Status.EXPIRED
    assert status_of(running) == Subscription.Status.ACTIVE
    assert status_of(cancelled_but_paid_up) == Subscription.Status.CANCELLED


def test_expire_subscriptions_leaves_expired_ones_untouched():
    already = ended(days_ago=40, status=Subscription.Status.EXPIRED)
    updated_at = already.updated_at

    assert tasks.expire_subscriptions() == 0

    already.refresh_from_db()
    assert (already.status, already.updated_at) == (Subscription.Status.EXPIRED, updated_at)


def test_expire_subscriptions_is_idempotent():
    lapsed = ended(days_ago=2)

    assert tasks.expire_subscriptions() == 1
    assert tasks.expire_subscriptions() == 0
    assert status_of(lapsed) == Subscription.Status.EXPIRED


def test_expire_subscriptions_runs_on_the_beat_schedule():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert tasks.expire_subscriptions.name in scheduled
