"""Admin bases: history nobody edits, and rows that change only through their services."""

import datetime

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection, models
from django.db.models import Max, Min
from django.http import HttpResponseNotAllowed
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL, a large result is counted by the planner's estimate instead of a full
    COUNT(*), so a page of a million-row trail loads at once; small results are exact."""

    EXACT_BELOW = 10_000

    @cached_property
    def count(self):
        if connection.vendor == "postgresql":
            sql, params = self.object_list.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
                estimate = cursor.fetchone()[0][0]["Plan"]["Plan Rows"]
            if estimate >= self.EXACT_BELOW:
                return estimate
        return super().count


class SpanDatesQuerySet(models.QuerySet):
    """For the admin's date hierarchy: the periods between the first and the last entry, read
    from the two ends of the created_at index, instead of a DISTINCT over every row (which on
    a million-row trail costs a full scan per page). A period may turn out empty."""

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        periods = []
        moment = _truncate(bounds["first"], kind)
        while moment <= bounds["last"]:
            periods.append(moment)
            moment = _next_period(moment, kind)
        return periods if order == "ASC" else periods[::-1]


def _truncate(moment: datetime.datetime, kind: str) -> datetime.datetime:
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("year", "month"):
        moment = moment.replace(day=1)
    if kind == "year":
        moment = moment.replace(month=1)
    return moment


def _next_period(moment: datetime.datetime, kind: str) -> datetime.datetime:
    if kind == "day":
        return moment + datetime.timedelta(days=1)
    if kind == "month":
        return (moment + datetime.timedelta(days=32)).replace(day=1)
    return moment.replace(year=moment.year + 1)


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is not edited, by anyone: no add, change or delete, superusers included."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return SpanDatesQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ServiceOnlyAdmin(admin.ModelAdmin):
    """Rows that change only through their services (a lifecycle, an outbox, a link): no add
    or delete here; actions call the services. Their page shows the row and has nothing to
    save: no save buttons, and a POST to it (an old page's, a forged one) is refused before
    anything is saved or recorded."""

    NOTHING_TO_SAVE = {
        "show_save": False,
        "show_save_and_continue": False,
        "show_save_and_add_another": False,
        "show_delete": False,
    }

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        extra_context = {**(extra_context or {}), **self.NOTHING_TO_SAVE}
        return super().changeform_view(request, object_id, form_url, extra_context)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False
