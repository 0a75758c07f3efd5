"""`since` and `until` on the audit list: exactly the entries created in [since, until), newest
first by id, page after page, also where ids and times disagree. The filter bounds ids by the
dates where that pays (audit/api/filters.py), which on a trail this small it never would: each
test runs both with the bound forced and as the filter decides. The entries are placed so that
a bound taken from the entry nearest a date, rather than from all the entries before it, would
lose one."""

import datetime
import random

import pytest
from django.db import connection
from django.utils import timezone

from audit.api import filters
from audit.models import AuditLog
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import db_value, run_sql, triggers_lifted

pytestmark = pytest.mark.django_db

LOGS = "/api/audit/logs/"


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True, params=["bound forced", "as decided"])
def bound(request, monkeypatch):
    """On a trail of a few entries the filter would rarely bound: force it, as for many."""
    if request.param == "bound forced":
        many = filters.SORTED_WINDOW_MAX_ENTRIES + 1
        estimate = lambda dates, connection: (many, many) if "until" in dates else None  # noqa: E731
        monkeypatch.setattr(filters, "window_estimate", estimate)
    return request.param


def entries_aged(now, *days: float) -> list[int]:
    """One entry per age, written in this order (so with growing ids), then backdated."""
    ids = [AuditLogFactory().id for _ in days]
    with triggers_lifted():
        for entry_id, age in zip(ids, days, strict=True):
            moment = now - datetime.timedelta(days=age)
            run_sql(
                "UPDATE audit_auditlog SET created_at = %s WHERE id = %s",
                params=[db_value(moment), entry_id],
            )
    return ids


def expected(since=None, until=None) -> list[int]:
    entries = AuditLog.objects.all()
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return list(entries.order_by("-id").values_list("id", flat=True))


def listed(api, page_size: int = 2, **dates) -> list[int]:
    """Every page of the list, following the cursor."""
    params = {k: v.isoformat().replace("+00:00", "Z") for k, v in dates.items()}
    response = api.get(LOGS, {**params, "page_size": page_size})
    seen = []
    while True:
        assert response.status_code == 200, response.content
        page = response.json()
        seen += [entry["id"] for entry in page["results"]]
        if not page["next"]:
            return seen
        response = api.get(page["next"])


def bounded(**dates) -> bool:
    """Whether the filter bounds ids for these dates."""
    estimate = filters.window_estimate(dates, connection)
    return estimate is not None and estimate[0] <= estimate[1]


def days_ago(now, days: float) -> datetime.datetime:
    return now - datetime.timedelta(days=days)


def test_until_takes_an_older_entry_whose_id_is_newer(staff_api, now, bound):
    # The last entry before the date by time is the 10-day-old one; a newer id is older still.
    old, ten, _, _, out_of_order, *_ = entries_aged(now, 20, 10, 1, 1, 15, *[1] * 12)
    until = days_ago(now, 5)

    assert listed(staff_api, until=until) == expected(until=until) == [out_of_order, ten, old]
    assert bounded(until=until)


def test_until_leaves_out_a_newer_entry_whose_id_is_older(staff_api, now):
    recent, old, older, *_ = entries_aged(now, 1, 20, 10, 1, 1, 1)
    until = days_ago(now, 5)

    assert recent not in listed(staff_api, until=until)
    assert listed(staff_api, until=until) == expected(until=until) == [older, old]


def test_since_takes_a_newer_entry_whose_id_is_older(staff_api, now):
    # The first entry after the date by time is the 2-day-old one; an older id is newer still.
    *_, newer_time, _, _, first_in_time = entries_aged(now, 20, 30, 1, 10, 15, 2)
    since = days_ago(now, 5)

    assert listed(staff_api, since=since) == expected(since=since)
    assert newer_time in listed(staff_api, since=since)
    assert first_in_time in listed(staff_api, since=since)


def test_since_leaves_out_an_older_entry_whose_id_is_newer(staff_api, now):
    *_, backdated = entries_aged(now, 10, 1, 2, 30)
    since = days_ago(now, 5)

    assert backdated not in listed(staff_api, since=since)
    assert listed(staff_api, since=since) == expected(since=since)


def test_both_dates_take_exactly_the_entries_between_them(staff_api, now, bound):
    ids = entries_aged(now, 20, 10, 1, 8, 13, 1, 6, 12, *[1] * 12)
    since, until = days_ago(now, 12.5), days_ago(now, 5)

    assert listed(staff_api, since=since, until=until) == [ids[7], ids[6], ids[3], ids[1]]
    assert expected(since=since, until=until) == [ids[7], ids[6], ids[3], ids[1]]
    assert bounded(since=since, until=until)


@pytest.mark.parametrize(
    ("since", "until"),
    [(None, 100), (100, None), (40, None), (None, 60), (70, 30), (95, 90), (10, 11), (5, 0.01)],
)
def test_any_window_over_shuffled_times_is_listed_exactly(staff_api, now, since, until):
    """Ids and times at random (seeded), so both the bounded and the unbounded ways of the
    filter meet entries out of order: the pages hold what the dates alone select."""
    shuffled = random.Random(7)
    entries_aged(now, *(shuffled.uniform(0, 100) for _ in range(40)))
    dates = {}
    if since is not None:
        dates["since"] = days_ago(now, since)
    if until is not None:
        dates["until"] = days_ago(now, until)

    assert listed(staff_api, page_size=3, **dates) == expected(**dates)


def test_dates_that_select_nothing_list_nothing(staff_api, now):
    entries_aged(now, 10, 5, 1)

    assert listed(staff_api, until=days_ago(now, 50)) == []
    assert listed(staff_api, since=now + datetime.timedelta(days=1)) == []
    assert listed(staff_api, since=days_ago(now, 3), until=days_ago(now, 4)) == []
