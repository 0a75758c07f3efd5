"""The numbers of the staff dashboard (admin/dashboard/): what the backbone recorded per day of
the site's time zone over the last DAYS days, today included.

Each table is read once per date column it is charted by, grouped by day in the database
(`TruncDate` in the zone), so that only a few rows per day reach Python; the `created_at`
ranges use the tables' indexes and, on PostgreSQL, prune the audit partitions outside the
window. The trail, by far the largest table (a million entries a month is a full scan of
0.4 s or more), is read from its counts per past day (services.count_audit_days, hourly) and
live only for the days not counted yet: today, and any day the task missed.
"""

import datetime
from collections import Counter
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit import registry
from audit.models import AuditLog
from downloads.models import DownloadEvent
from emails.models import EmailLog
from invoicegen.dashboard.models import AuditDay, AuditDayCount

DAYS = 30
FAILED_LOGIN = "user.login_failed"
# At most this many series of categories: beyond, the smaller ones are added up as "other",
# so that a chart stays readable whatever the domain registers.
MAX_SERIES = 8


@dataclass(frozen=True)
class Series:
    label: str
    values: list[int]  # one per day of the window


@dataclass(frozen=True)
class Activity:
    days: list[datetime.date]
    zone: str
    audit_by_category: list[Series]
    # Failed logins, and the other security events: together, every security event.
    security: list[Series]
    # Emails queued (created), sent, and failed (by their last attempt): not parts of a whole.
    outbox: list[Series]
    downloads: list[Series]  # granted, refused


@dataclass(frozen=True)
class Window:
    zone: ZoneInfo
    days: list[datetime.date]

    @classmethod
    def ending(cls, now: datetime.datetime, days: int) -> "Window":
        """The `days` days of the site's time zone through the one `now` falls on."""
        zone = timezone.get_default_timezone()
        today = timezone.localdate(now, zone)
        return cls(zone, [today - datetime.timedelta(days=n) for n in range(days - 1, -1, -1)])

    @property
    def start(self) -> datetime.datetime:
        return datetime.datetime.combine(self.days[0], datetime.time.min, self.zone)

    @property
    def end(self) -> datetime.datetime:
        following = self.days[-1] + datetime.timedelta(days=1)
        return datetime.datetime.combine(following, datetime.time.min, self.zone)

    def series(self, label: str, counts: Counter) -> Series:
        return Series(label, [counts[day] for day in self.days])

    def columns(self, groups: list[dict], labels: dict[str, str]) -> list[Series]:
        """A series per count of `groups` (per_day's rows, one per day), named by `labels`."""
        return [
            self.series(label, Counter({group["day"]: group[key] for group in groups}))
            for key, label in labels.items()
        ]


def daily_activity(*, days: int = DAYS, now: datetime.datetime | None = None) -> Activity:
    window = Window.ending(now or timezone.now(), days)
    entries = audit_counts(window)
    return Activity(
        days=window.days,
        zone=str(window.zone),
        audit_by_category=_audit_by_category(window, entries),
        security=_security(window, entries),
        outbox=_outbox(window),
        downloads=_downloads(window),
    )


def per_day(rows: QuerySet, field: str, window: Window, *keys: str, **counts) -> list[dict]:
    """`rows` with `field` in the window, grouped by its day (as `day`) and `keys`, with
    `counts` (aggregates) for each group."""
    in_window = rows.filter(**{f"{field}__gte": window.start, f"{field}__lt": window.end})
    return list(
        in_window.annotate(day=TruncDate(field, tzinfo=window.zone))
        .order_by()
        .values("day", *keys)
        .annotate(**counts)
    )


def count_entries(window: Window) -> list[dict]:
    """The trail's entries per day, category and action, counted live."""
    return per_day(
        AuditLog.objects.all(), "created_at", window, "category", "action", entries=Count("id")
    )


def audit_counts(window: Window) -> list[dict]:
    """Entries per day, category and action: from the counts of the days counted, live for the
    others (all the days from the first one not counted)."""
    zone = str(window.zone)
    counted = set(
        AuditDay.objects.filter(zone=zone, day__in=window.days).values_list("day", flat=True)
    )
    rows = list(
        AuditDayCount.objects.filter(audit_day__zone=zone, audit_day__day__in=counted).values(
            "category", "action", "entries", day=F("audit_day__day")
        )
    )
    uncounted = [index for index, day in enumerate(window.days) if day not in counted]
    if uncounted:
        rest = Window(window.zone, window.days[uncounted[0] :])
        rows += [row for row in count_entries(rest) if row["day"] not in counted]
    return rows


def _audit_by_category(window: Window, entries: list[dict]) -> list[Series]:
    totals = Counter()
    for row in entries:
        totals[row["category"]] += row["entries"]
    shown = [category for category, _ in totals.most_common()]
    if len(shown) > MAX_SERIES:
        shown = shown[: MAX_SERIES - 1]
    by_category = {category: Counter() for category in [*shown, "other"]}
    for row in entries:
        label = row["category"] if row["category"] in by_category else "other"
        by_category[label][row["day"]] += row["entries"]
    return [
        window.series(label, counts)
        for label, counts in sorted(by_category.items(), key=lambda item: item[0] == "other")
        if counts
    ]


def _security(window: Window, entries: list[dict]) -> list[Series]:
    security = set(registry.security_actions())
    failed_logins, others = Counter(), Counter()
    for row in entries:
        if row["action"] == FAILED_LOGIN:
            failed_logins[row["day"]] += row["entries"]
        elif row["action"] in security:
            others[row["day"]] += row["entries"]
    return [
        window.series("failed logins", failed_logins),
        window.series("other security events", others),
    ]


def _outbox(window: Window) -> list[Series]:
    emails = EmailLog.objects.all()
    queries = {
        "queued": (emails, "created_at"),
        "sent": (emails.filter(status=EmailLog.Status.SENT), "sent_at"),
        "failed": (emails.filter(status=EmailLog.Status.FAILED), "claimed_at"),
    }
    return [
        window.columns(per_day(rows, field, window, n=Count("id")), {"n": label})[0]
        for label, (rows, field) in queries.items()
    ]


def _downloads(window: Window) -> list[Series]:
    groups = per_day(
        DownloadEvent.objects.filter(kind=DownloadEvent.Kind.DOWNLOAD),  # views are no attempts
        "created_at",
        window,
        granted_events=Count("id", filter=Q(granted=True)),
        refused_events=Count("id", filter=Q(granted=False)),
    )
    return window.columns(groups, {"granted_events": "granted", "refused_events": "refused"})
