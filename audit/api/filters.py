import re

import django_filters
from django.core.validators import validate_ipv46_address
from django.db import connections
from django.db.models import BigIntegerField, DateTimeField, Func
from django.db.models.expressions import RawSQL
from drf_spectacular.utils import extend_schema_field

from audit.models import AuditLog, Origin
from invoicegen.core.api import IdFilter, TrueFalseFilter, UTCDateTimeFilter

IP_ADDRESS = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}

# `until` (with or without `since`), bounded in ids. Lists are newest first by id, and a date
# condition alone lets PostgreSQL walk the id index down from the newest entry, skipping every
# entry newer than `until`: seconds on a trail of millions. Every entry with created_at in
# [since, until) has an id at most the greatest id of those entries, which the created_at index
# yields (`id + 0`: not from the id index, which would walk as above), computed in the page's
# own query, so in its snapshot. The created_at conditions stay: the answer is exactly the one
# the dates alone give, also where ids and times disagree (an entry whose statement took its id
# after a later one had started, a backdated entry); the bound only says where the walk down
# the id index starts. It costs a pass over the entries between the dates, so it is taken only
# where that pass is shorter than the walk it saves, judged from the ids of the entries at the
# dates (one lookup for all of them). Where those entries are many, the date conditions are
# written so that the planner walks the id index from the bound rather than reading and sorting
# them all from the created_at index; a few thousand it may sort. The SQL is written by hand:
# the same for every request, where the ORM would build it anew each time (a millisecond or
# more); `%(since)s` and `%(until)s` stand for the dates. (`since` alone needs no bound: the
# newest entries come first.)
SORTED_WINDOW_MAX_ENTRIES = 10_000

_ENDS = (
    "SELECT (SELECT id FROM {table} ORDER BY id DESC LIMIT 1),"
    " (SELECT id FROM {table} ORDER BY id LIMIT 1),"
    " (SELECT id FROM {table} WHERE created_at < %(until)s ORDER BY created_at DESC LIMIT 1),"
    " (SELECT id FROM {table} WHERE created_at >= %(since)s ORDER BY created_at LIMIT 1)"
)
_BOUND = "(SELECT MAX(id + 0) FROM {table} WHERE {window})"
_WINDOW = {"since": "created_at >= %(since)s", "until": "created_at < %(until)s"}
_DATE = re.compile(r"%\((since|until)\)s")


class _NotIndexed(Func):
    """created_at as an expression that no index serves (PostgreSQL)."""

    template = "(%(expressions)s + interval '0 seconds')"
    output_field = DateTimeField()


def _sql(template: str, dates: dict, connection, **parts) -> tuple[str, list]:
    """The SQL and its parameters, the dates adapted for the database."""
    sql = template.format(table=AuditLog._meta.db_table, **parts)
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(dates.get(name)) for name in _DATE.findall(sql)]
    return _DATE.sub("%s", sql), params


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
    connection = connections[queryset.db]
    field = "created_at"
    estimate = window_estimate(dates, connection)
    if estimate is not None and estimate[0] <= estimate[1]:
        sql, params = _sql(_BOUND, dates, connection, window=" AND ".join(map(_WINDOW.get, dates)))
        bound = RawSQL(sql, params, output_field=BigIntegerField())  # noqa: S611 (params)
        queryset = queryset.filter(id__lte=bound)
        if estimate[0] > SORTED_WINDOW_MAX_ENTRIES and connection.vendor == "postgresql":
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
            field_name="ip_address", validators=[validate_ipv46_address], strip=False
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

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
