"""The dashboard's numbers: per day of the site's time zone, over the last 30 days."""

import pytest

from downloads.models import DownloadEvent
from downloads.tests.factories import DownloadEventFactory
from emails.models import EmailLog
from emails.tests.factories import EmailLogFactory
from invoicegen.dashboard import activity as dashboard
from invoicegen.dashboard.tests.helpers import (
    BEFORE_THE_WINDOW,
    EARLY_ON_THE_31ST,
    FIRST_DAY,
    JAN,
    LATE_ON_THE_30TH,
    NOW,
    by_day,
    entries_at,
)

pytestmark = pytest.mark.django_db


def test_the_window_is_the_last_30_days_of_the_sites_time_zone():
    activity = dashboard.daily_activity(now=NOW)

    assert activity.zone == "America/New_York"
    assert activity.days == [JAN[day] for day in range(2, 32)]


def test_audit_entries_are_counted_per_day_and_category_in_the_sites_time_zone():
    entries_at(
        ("user.login", LATE_ON_THE_30TH),
        ("user.login", EARLY_ON_THE_31ST),
        ("user.login_failed", EARLY_ON_THE_31ST),
        ("security.permission_denied", FIRST_DAY),
        ("download.succeeded", FIRST_DAY),
        ("download.succeeded", FIRST_DAY),
        ("user.login", BEFORE_THE_WINDOW),
    )

    activity = dashboard.daily_activity(now=NOW)

    assert by_day(activity.audit_by_category, activity.days) == {
        "auth": {JAN[30]: 1, JAN[31]: 2},
        "download": {JAN[2]: 2},
        "security": {JAN[2]: 1},
    }
    assert [one.label for one in activity.audit_by_category] == ["auth", "download", "security"]


def test_categories_beyond_the_limit_are_added_up_as_other(monkeypatch):
    monkeypatch.setattr(dashboard, "MAX_SERIES", 3)
    entries_at(
        *[("user.login", FIRST_DAY)] * 3,
        *[("download.succeeded", FIRST_DAY)] * 2,
        ("notification.test", FIRST_DAY),
        ("security.token_misuse", EARLY_ON_THE_31ST),
    )

    activity = dashboard.daily_activity(now=NOW)

    assert by_day(activity.audit_by_category, activity.days) == {
        "auth": {JAN[2]: 3},
        "download": {JAN[2]: 2},
        "other": {JAN[2]: 1, JAN[31]: 1},
    }


def test_failed_logins_and_the_other_security_events_are_counted_apart():
    entries_at(
        ("user.login_failed", LATE_ON_THE_30TH),
        ("user.login_failed", EARLY_ON_THE_31ST),
        ("user.login_failed", EARLY_ON_THE_31ST),
        ("security.account_locked", EARLY_ON_THE_31ST),
        ("download.denied", FIRST_DAY),
        ("user.login", FIRST_DAY),  # not a security event
        ("user.login_failed", BEFORE_THE_WINDOW),
    )

    activity = dashboard.daily_activity(now=NOW)

    assert by_day(activity.security, activity.days) == {
        "failed logins": {JAN[30]: 1, JAN[31]: 2},
        "other security events": {JAN[2]: 1, JAN[31]: 1},
    }


def test_emails_count_when_queued_sent_and_failed():
    sent = EmailLog.Status.SENT
    EmailLogFactory(created_at=LATE_ON_THE_30TH, status=sent, sent_at=EARLY_ON_THE_31ST)
    EmailLogFactory(created_at=FIRST_DAY, status=sent, sent_at=FIRST_DAY)
    EmailLogFactory(created_at=EARLY_ON_THE_31ST)  # still queued
    EmailLogFactory(created_at=FIRST_DAY, failed=True, claimed_at=LATE_ON_THE_30TH)
    EmailLogFactory(created_at=BEFORE_THE_WINDOW, status=sent, sent_at=FIRST_DAY)

    activity = dashboard.daily_activity(now=NOW)

    assert by_day(activity.outbox, activity.days) == {
        "queued": {JAN[2]: 2, JAN[30]: 1, JAN[31]: 1},
        "sent": {JAN[2]: 2, JAN[31]: 1},
        "failed": {JAN[30]: 1},
    }


def test_downloads_are_counted_granted_and_refused():
    DownloadEventFactory(created_at=FIRST_DAY)
    DownloadEventFactory(created_at=LATE_ON_THE_30TH)
    DownloadEventFactory(created_at=LATE_ON_THE_30TH, granted=False)
    DownloadEventFactory(created_at=EARLY_ON_THE_31ST, granted=False)
    DownloadEventFactory(created_at=BEFORE_THE_WINDOW)
    DownloadEventFactory(created_at=FIRST_DAY, kind=DownloadEvent.Kind.VIEWED)  # not a download

    activity = dashboard.daily_activity(now=NOW)

    assert by_day(activity.downloads, activity.days) == {
        "granted": {JAN[2]: 1, JAN[30]: 1},
        "refused": {JAN[30]: 1, JAN[31]: 1},
    }


def test_days_without_anything_count_zero():
    activity = dashboard.daily_activity(now=NOW)

    assert activity.audit_by_category == []
    for series in [*activity.security, *activity.outbox, *activity.downloads]:
        assert series.values == [0] * 30
