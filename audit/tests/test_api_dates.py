"""`since` and `until` on the audit list: exactly the entries created in [since, until), newest
first by id, page after page, also where ids and times disagree. The filter bounds ids by the
dates (audit/api/filters.py): from the checkpoints where the trail is sealed, else from the
created_at index where that pays, which on a trail this small it never would. Each test runs
on a trail sealed in checkpoints of a few entries (the newest left unsealed), and unsealed both
with the bound forced and as the filter decides. The entries are placed so that a bound taken
from the entry nearest a date, rather than from all the entries before it, would lose one."""

import datetime
import random
import sys

import pytest
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from audit import services
from audit.api import filters
from audit.models import AuditLog, Checkpoint
from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import db_value, run_sql, triggers_lifted

pytestmark = pytest.mark.django_db

LOGS = "/api/audit/logs/"


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True, params=["sealed", "bound forced", "as decided"])
def bound(request, monkeypatch):
    """On a trail of a few entries the filter would rarely bound from the created_at index:
    force it, as for many. Sealed, it bounds from the checkpoints."""
    if request.param == "bound forced":
        many = filters.SORTED_WINDOW_MAX_ENTRIES + 1
        estimate = lambda dates, connection: (many, many) if "until" in dates else None  # noqa: E731
        monkeypatch.setattr(filters, "window_estimate", estimate)
    if request.param == "sealed":
        monkeypatch.setattr(sys.modules[__name__], "entries_aged", sealed(entries_aged))
    return request.param


def entries_aged(now, *days: float) -> list[int]:
    """One entry per age, written in this order (so with growing ids), then backdated."""
    ids = [AuditLogFactory().id for _ in days]
    backdate(now, dict(zip(ids, days, strict=True)))
    return ids


def backdate(now, ages: dict[int, float]) -> None:
    with triggers_lifted():
        for entry_id, age in ages.items():
            moment = now - datetime.timedelta(days=age)
            run_sql(
                "UPDATE audit_auditlog SET created_at = %s WHERE id = %s",
                params=[db_value(moment), entry_id],
            )


def sealed(write_entries):
    """`write_entries`, then the trail sealed in checkpoints of three entries, but for the
    newest one or two: so ranges straddle the dates, and the tail is read too."""

    def write_and_seal(*args):
        ids = write_entries(*args)
        while AuditLog.objects.filter(id__gt=sealed_through()).count() > 2:
            services.seal_audit_log(max_rows=3)
        return ids

    return write_and_seal


def sealed_through() -> int:
    return Checkpoint.objects.aggregate(last=Max("last_id"))["last"] or 0


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
    if filters.checkpoint_bounds(dates, connection) is not None:
        return True
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


# Checkpoints and their times


def every_window(now) -> list[dict]:
    """Dates on both sides of every entry, alone and in pairs."""
    days = [0.5, 3, 7, 9, 12, 16, 25, 45, 60, 200]
    windows = [{"since": days_ago(now, d)} for d in days]
    windows += [{"until": days_ago(now, d)} for d in days]
    windows += [{"since": days_ago(now, a), "until": days_ago(now, b)} for a in days for b in days]
    return windows


def assert_every_window_listed_exactly(api, now):
    for dates in every_window(now):
        assert listed(api, page_size=4, **dates) == expected(**dates), dates


def test_a_checkpoint_records_where_its_range_lies_in_time(now):
    ids = [AuditLogFactory().id for _ in range(5)]
    backdate(now, dict(zip(ids, [10, 8, 12, 5, 9], strict=True)))

    first = services.seal_audit_log(max_rows=2)
    second = services.seal_audit_log(max_rows=2)
    third = services.seal_audit_log()

    assert (first.oldest_at, first.newest_at) == (days_ago(now, 10), days_ago(now, 8))
    assert first.max_lag == datetime.timedelta(days=2)
    # The newest of all sealed so far (8 days), the oldest of its own range (12 days).
    assert (second.oldest_at, second.newest_at) == (days_ago(now, 12), days_ago(now, 5))
    assert second.max_lag == datetime.timedelta(days=7)
    assert (third.oldest_at, third.newest_at) == (days_ago(now, 9), days_ago(now, 5))
    assert third.max_lag == datetime.timedelta(days=7)  # never decreases
    assert services.check_audit_log().ok


def test_a_late_entry_with_an_old_time_is_found_past_the_checkpoints_before_it(staff_api, now):
    """A transaction that stayed open long writes an old time under the newest id: the ranges
    sealed after it no longer bound `until`."""
    entries_aged(now, 60, 50, 40, 30, 20, 10, 5, 3, 2, 1)
    straggler, *_ = entries_aged(now, 45, 0.5, 0.5, 0.5)
    while services.seal_audit_log(max_rows=2):
        pass

    assert straggler in listed(staff_api, until=days_ago(now, 44))
    assert straggler not in listed(staff_api, since=days_ago(now, 44))
    assert_every_window_listed_exactly(staff_api, now)


def test_checkpoints_older_than_the_times_count_as_holding_any_time(staff_api, now):
    """Checkpoints sealed before they recorded times (null) are followed by ones that do: the
    first of those takes its newest_at from the entries before it too."""
    entries_aged(now, 60, 9, 45, 30)
    services.seal_audit_log(max_rows=2)
    services.seal_audit_log()
    with triggers_lifted():
        run_sql("UPDATE audit_checkpoint SET oldest_at = NULL, newest_at = NULL, max_lag = NULL")
    assert filters.checkpoint_bounds({"until": now}, connection) is None  # none with times yet

    entries_aged(now, 25, 16, 3, 0.5, 7)
    services.seal_audit_log(max_rows=2)
    services.seal_audit_log()

    first_timed = Checkpoint.objects.filter(newest_at__isnull=False).order_by("id").first()
    through = AuditLog.objects.filter(id__lte=first_timed.last_id)
    assert first_timed.newest_at == through.aggregate(newest=Max("created_at"))["newest"]
    assert filters.checkpoint_bounds({"until": now}, connection) is not None
    assert_every_window_listed_exactly(staff_api, now)
    assert services.check_audit_log().ok


def test_a_long_unsealed_tail_is_bounded_from_the_created_at_index(staff_api, now, monkeypatch):
    entries_aged(now, 60, 9, 45, 30)
    services.seal_audit_log()
    tail = AuditLogFactory.create_batch(6)
    backdate(now, dict(zip([entry.id for entry in tail], [25, 16, 3, 0.5, 7, 12], strict=True)))
    monkeypatch.setattr(filters, "UNSEALED_TAIL_MAX", 5)

    assert filters.checkpoint_bounds({"until": now}, connection) is None
    assert_every_window_listed_exactly(staff_api, now)


def test_dates_at_the_ends_of_time_list_without_error(staff_api, now):
    entries_aged(now, 10, 5, 1)
    services.seal_audit_log()

    everything = expected()
    assert (
        listed(staff_api, until=datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        == everything
    )
    assert listed(staff_api, since=datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)) == everything


@pytest.mark.parametrize(
    ("column", "value"),
    [("oldest_at", days_ago(timezone.now(), 3)), ("newest_at", days_ago(timezone.now(), 30))],
)
def test_times_that_misstate_the_range_fail_verification(now, column, value):
    entries_aged(now, 10, 5, 20)
    services.seal_audit_log()
    checkpoint = Checkpoint.objects.order_by("id").last()
    with triggers_lifted():
        run_sql(
            f"UPDATE audit_checkpoint SET {column} = %s WHERE id = %s",  # noqa: S608
            params=[db_value(value), checkpoint.id],
        )

    result = services.check_audit_log()

    assert (result.ok, result.first_bad_id) == (False, checkpoint.first_id)
