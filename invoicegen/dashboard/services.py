"""Counting the trail per day for the dashboard, once each day is over (see models.py)."""

import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from invoicegen.dashboard.activity import DAYS, Window, count_entries
from invoicegen.dashboard.models import AuditDay, AuditDayCount

# A day is counted this long after it ended: an entry's time is when its transaction began
# (the database's now()), so entries of a day may still commit a little after its midnight.
SETTLE = datetime.timedelta(hours=1)


def count_audit_days(*, now: datetime.datetime | None = None) -> list[AuditDay]:
    """Count the days of the dashboard's window that are over and not counted yet, in the
    site's time zone; forget the days before the window and those of another zone."""
    now = now or timezone.now()
    window = Window.ending(now, DAYS)
    zone = str(window.zone)
    AuditDay.objects.filter(Q(day__lt=window.days[0]) | ~Q(zone=zone)).delete()
    done = set(AuditDay.objects.filter(zone=zone).values_list("day", flat=True))
    counted = []
    for day in window.days:
        one = Window(window.zone, [day])
        if day not in done and one.end + SETTLE <= now:
            try:
                counted.append(_count_day(one))
            except IntegrityError:  # another worker counted it meanwhile
                continue
    return counted


@transaction.atomic
def _count_day(window: Window) -> AuditDay:
    audit_day = AuditDay.objects.create(zone=str(window.zone), day=window.days[0])
    AuditDayCount.objects.bulk_create(
        AuditDayCount(
            audit_day=audit_day,
            category=row["category"],
            action=row["action"],
            entries=row["entries"],
        )
        for row in count_entries(window)
    )
    return audit_day
