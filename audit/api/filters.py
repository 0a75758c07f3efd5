import datetime
import re

import django_filters
from django.core.validators import validate_ipv46_address
from django.db import connections
from django.db.models import BigIntegerField, DateTimeField, Func
from django.db.models.expressions import RawSQL
from drf_spectacular.utils import extend_schema_field

from audit import subjects
from audit.models import AuditLog, Checkpoint, Origin
from invoicegen.core.api import IdFilter, TrueFalseFilter, UTCDateTimeFilter

IP_ADDRESS = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}

# `since` and `until`, bounded in ids. Lists are newest first by id, and a date condition alone
# lets PostgreSQL walk the id index down from the newest entry past every entry newer than
# `until`, or down to the oldest when few entries match: seconds on a trail of millions. Ids and
# times mostly agree, but not always: created_at is the start of the writing transaction, so a
# long one writes an old time under a new id. The page's query keeps the date conditions, so the
# answer is exactly the one the dates alone give; bounds on the ids only say where the walk down
# the id index starts and stops, and are taken where no entry of the window can lie beyond them.
#
# They come from the checkpoints, which record where their ranges lie in time (audit/models.py
# Checkpoint): `newest_at` never decreases, so one probe of its index finds
# - for `since`, the first checkpoint whose newest_at reaches it: every entry before its range
#   is older than `since`;
# - for `until`, the last checkpoint whose newest_at is older: all of its range is. A later range
#   holds an entry older than `until` only if its oldest_at is, and a range's oldest_at lies at
#   most max_lag (of the newest checkpoint) before its newest_at: a probe of the checkpoints
#   whose newest_at lies within max_lag after `until` finds the last such range.
# The unsealed tail (the entries after the newest checkpoint: a minute of writes) is read; the
# ranges sealed before checkpoints had times count as holding entries of any time. So the walk
# passes at most the entries of one range outside the dates at either end. Each of these queries
# reads its own snapshot: only an entry that commits in between may be listed or not, as by a
# request a moment later or earlier.
#
# Without a checkpoint with times, or with an unsealed tail longer than UNSEALED_TAIL_MAX (the
# seal not running), `until` is bounded from the created_at index instead: every entry with
# created_at in [since, until) has an id at most the greatest id of those entries, which the
# index yields (`id + 0`: not from the id index, which would walk as above), computed in the
# page's own query. That costs a pass over the entries between the dates, so it is taken only
# where that pass is shorter than the walk it saves, judged from the ids of the entries at the
# dates (one lookup for all of them). Where those entries are many, the date conditions are
# written so that the planner walks the id index from the bound rather than reading and sorting
# them all from the created_at index; a few thousand it may sort.
#
# The SQL is written by hand: the same for every request, where the ORM would build it anew each
# time (a millisecond or more); `%(since)s` and `%(until)s` stand for the dates (`%(lagged)s`
# for `until` plus max_lag, `%(sealed)s` for the newest checkpoint's last_id).
SORTED_WINDOW_MAX_ENTRIES = 10_000
UNSEALED_TAIL_MAX = 10_000
_LAST_MOMENT = datetime.datetime.max.replace(tzinfo=datetime.UTC)

_SEALED = (
    "SELECT c.last_id, c.max_lag,"
    " (SELECT first_id FROM {checkpoints} WHERE newest_at IS NOT NULL"
    "  ORDER BY newest_at, last_id LIMIT 1),"
    " (SELECT id FROM {table} ORDER BY id DESC LIMIT 1)"
    " FROM {checkpoints} c ORDER BY c.id DESC LIMIT 1"
)
_CHECKPOINT_BOUNDS = {
    "until": (
        "(SELECT last_id FROM {checkpoints} WHERE newest_at < %(until)s"
        "  ORDER BY newest_at DESC, last_id DESC LIMIT 1),"
        " (SELECT max(last_id) FROM {checkpoints} WHERE newest_at >= %(until)s"
        "  AND newest_at < %(lagged)s AND oldest_at < %(until)s),"
        " (SELECT max(id) FROM (SELECT id, created_at FROM {table} WHERE id > %(sealed)s"
        "  ORDER BY id LIMIT {tail_max}) tail WHERE created_at < %(until)s)"
    ),
    "since": (
        "(SELECT first_id FROM {checkpoints} WHERE newest_at >= %(since)s"
        "  ORDER BY newest_at, last_id LIMIT 1)"
    ),
}
_ENDS = (
    "SELECT (SELECT id FROM {table} ORDER BY id DESC LIMIT 1),"
    " (SELECT id FROM {table} ORDER BY id LIMIT 1),"
    " (SELECT id FROM {table} WHERE created_at < %(until)s ORDER BY created_at DESC LIMIT 1),"
    " (SELECT id FROM {table} WHERE created_at >= %(since)s ORDER BY created_at LIMIT 1)"
)
_BOUND = "(SELECT MAX(id + 0) FROM {table} WHERE {window})"
_WINDOW = {"since": "created_at >= %(since)s", "until": "created_at < %(until)s"}
_PARAM = re.compile(r"%\((since|until|lagged|sealed)\)s")


class _NotIndexed(Func):
    """created_at as an expression that no index serves (PostgreSQL)."""

    template = "(%(expressions)s + interval '0 seconds')"
    output_field = DateTimeField()


def _sql(template: str, values: dict, connection, **parts) -> tuple[str, list]:
    """The SQL and its parameters, the dates adapted for the database."""
    sql = template.format(
        table=AuditLog._meta.db_table,
        checkpoints=Checkpoint._meta.db_table,
        tail_max=UNSEALED_TAIL_MAX,
        **parts,
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        values[name] if name == "sealed" else adapt(values.get(name))
        for name in _PARAM.findall(sql)
    ]
    return _PARAM.sub("%s", sql), params


def checkpoint_bounds(dates: dict, connection) -> dict | None:
    """The least and greatest id (None: no bound) that an entry created in [since, until) can
    have, from the checkpoints; None without a checkpoint with times or with a long tail."""
    with connection.cursor() as cursor:
        cursor.execute(*_sql(_SEALED, dates, connection))
        sealed, max_lag, timed_from, newest = cursor.fetchone() or (None,) * 4
        if max_lag is None or newest is None or newest - sealed > UNSEALED_TAIL_MAX:
            return None
        if not connection.features.has_native_duration_field:
            max_lag = datetime.timedelta(microseconds=max_lag)
        values = {**dates, "sealed": sealed}
        if "until" in dates:  # no further than Python's last moment (`until` may be near it)
            values["lagged"] = dates["until"] + min(max_lag, _LAST_MOMENT - dates["until"])
        parts = ", ".join(_CHECKPOINT_BOUNDS[name] for name in ("until", "since") if name in dates)
        cursor.execute(*_sql(f"SELECT {parts}", values, connection))
        found = list(cursor.fetchone())
    bounds = {}
    if "until" in dates:
        # The ranges sealed before checkpoints had times, up to timed_from, may hold any time.
        candidates = [timed_from - 1, *found[:3]]
        bounds["until"] = max(c for c in candidates if c is not None)
    if "since" in dates:
        first = found[-1]
        # Everything sealed is older: the tail, if anything. From the first checkpoint with
        # times, the ranges before it may hold any time.
        bounds["since"] = sealed + 1 if first is None else first if first > timed_from else None
    return bounds


def window_estimate(dates: dict, connection) -> tuple[int, int] | None:
    """With `until`: roughly how many entries lie between the dates and how many after them,
    from the ids at the window's ends (None without `until` or without entries)."""
    if "until" not in dates:
        return None
    with connection.cursor() as cursor:
        cursor.execute(*_sql(_ENDS, dates, connection))
        newest, oldest, top, bottom = cursor.fetchone()
    if newest is None:
        return None
    bottom = bottom if "since" in dates else oldest
    between = 0 if top is None or bottom is None else max(0, top - bottom + 1)
    return between, newest - (oldest if top is None else top)


def filter_by_dates(queryset, *, since=None, until=None):
    """The entries of `queryset` created in [since, until), their ids bounded where it pays."""
    dates = {"since": since, "until": until}
    dates = {name: value for name, value in dates.items() if value is not None}
    if not dates:
        return queryset
    connection = connections[queryset.db]
    field = "created_at"
    bounds = checkpoint_bounds(dates, connection)
    if bounds is not None:
        if bounds.get("until") is not None:
            queryset = queryset.filter(id__lte=bounds["until"])
        if bounds.get("since") is not None:
            queryset = queryset.filter(id__gte=bounds["since"])
        unindexed = True
    else:
        estimate = window_estimate(dates, connection)
        unindexed = False
        if estimate is not None and estimate[0] <= estimate[1]:
            window = " AND ".join(map(_WINDOW.get, dates))
            bound = RawSQL(*_sql(_BOUND, dates, connection, window=window), BigIntegerField())  # noqa: S611 (params)
            queryset = queryset.filter(id__lte=bound)
            unindexed = estimate[0] > SORTED_WINDOW_MAX_ENTRIES
    if unindexed and connection.vendor == "postgresql":
        field = "created_at_unindexed"
        queryset = queryset.alias(created_at_unindexed=_NotIndexed("created_at"))
    lookups = {"since": f"{field}__gte", "until": f"{field}__lt"}
    return queryset.filter(**{lookups[name]: value for name, value in dates.items()})


class AuditLogFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(
        method="filter_action", help_text="An exact action, or a prefix ending in '.'"
    )
    user = IdFilter(field_name="user__id")
    resource_type = django_filters.CharFilter(max_length=50)
    resource_id = django_filters.CharFilter(max_length=64)
    success = TrueFalseFilter()
    origin = django_filters.ChoiceFilter(choices=Origin.choices)
    ip = extend_schema_field(IP_ADDRESS)(
        # Not stripped: a value of spaces would otherwise be taken as no filter.
        django_filters.CharFilter(
            method="filter_ip", validators=[validate_ipv46_address], strip=False
        )
    )
    # Both at once, in filter_queryset(): filter_by_dates().
    since = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte", method="dates_later")
    until = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt", method="dates_later")

    class Meta:
        model = AuditLog
        fields = []

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        dates = self.form.cleaned_data
        return filter_by_dates(queryset, since=dates.get("since"), until=dates.get("until"))

    def dates_later(self, queryset, name, value):
        return queryset

    def filter_ip(self, queryset, name, value):
        return queryset.filter(subjects.with_address(value))

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
