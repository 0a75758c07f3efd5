"""Counting past days: once each, after they settle, read back as the trail would answer."""

import datetime

import pytest
from django.conf import settings

from invoicegen.dashboard import services, tasks
from invoicegen.dashboard.activity import daily_activity
from invoicegen.dashboard.models import AuditDay, AuditDayCount
from invoicegen.dashboard.tests import helpers as moments
from invoicegen.dashboard.tests.helpers import JAN, NOW, by_day, entries_at

pytestmark = pytest.mark.django_db

HOUR = datetime.timedelta(hours=1)
MIDNIGHT_31ST = datetime.datetime(2025, 1, 31, 5, tzinfo=datetime.UTC)  # in New York


def counted_days(zone: str = "America/New_York") -> list[datetime.date]:
    return sorted(AuditDay.objects.filter(zone=zone).values_list("day", flat=True))


def test_the_past_days_are_counted_once_and_today_is_not():
    entries_at(("user.login", moments.FIRST_DAY), ("user.login_failed", moments.LATE_ON_THE_30TH))

    assert len(services.count_audit_days(now=NOW)) == 29
    assert services.count_audit_days(now=NOW) == []

    assert counted_days() == [JAN[day] for day in range(2, 31)]
    assert sorted(AuditDayCount.objects.values_list("audit_day__day", "action", "entries")) == [
        (JAN[2], "user.login", 1),
        (JAN[30], "user.login_failed", 1),
    ]


def test_a_day_is_counted_an_hour_after_it_ended():
    services.count_audit_days(now=MIDNIGHT_31ST + HOUR - datetime.timedelta(seconds=1))
    assert counted_days()[-1] == JAN[29]

    services.count_audit_days(now=MIDNIGHT_31ST + HOUR)
    assert counted_days()[-1] == JAN[30]


def test_the_dashboard_reads_counted_days_from_their_counts_and_the_others_live():
    entries_at(("user.login", moments.LATE_ON_THE_30TH), ("user.login", moments.FIRST_DAY))
    services.count_audit_days(now=NOW)
    # Written after the count (only a superuser can place an entry in the past): the counted
    # day does not see it, today (counted live) sees its own.
    entries_at(("user.login", moments.LATE_ON_THE_30TH), ("user.login", moments.EARLY_ON_THE_31ST))

    activity = daily_activity(now=NOW)

    assert by_day(activity.audit_by_category, activity.days) == {
        "auth": {JAN[2]: 1, JAN[30]: 1, JAN[31]: 1}
    }


def test_a_day_the_count_missed_is_read_live():
    entries_at(("user.login", moments.FIRST_DAY), ("user.login_failed", moments.LATE_ON_THE_30TH))
    services.count_audit_days(now=NOW)
    AuditDay.objects.filter(day=JAN[30]).delete()
    entries_at(("download.denied", moments.FIRST_DAY))  # a counted day: not seen

    activity = daily_activity(now=NOW)

    assert by_day(activity.security, activity.days) == {
        "failed logins": {JAN[30]: 1},
        "other security events": {},
    }
    assert by_day(activity.audit_by_category, activity.days) == {"auth": {JAN[2]: 1, JAN[30]: 1}}


def test_days_before_the_window_and_another_zones_are_forgotten(settings):
    services.count_audit_days(now=NOW)
    settings.TIME_ZONE = "Europe/Paris"

    services.count_audit_days(now=NOW + datetime.timedelta(days=2))

    assert counted_days("America/New_York") == []
    first = JAN[4]
    assert counted_days("Europe/Paris") == [first + datetime.timedelta(days=n) for n in range(29)]


def test_the_hourly_task_counts_the_days():
    assert settings.CELERY_BEAT_SCHEDULE["count-audit-days"]["task"] == tasks.count_audit_days.name

    counted = tasks.count_audit_days.delay().get()

    assert counted in (28, 29)  # yesterday's count waits for the first hour of today
    assert len(counted_days()) == counted
