"""A month in New York, and entries written at chosen moments of it."""

import datetime

from audit.tests.factories import AuditLogFactory
from audit.tests.helpers import db_value, run_sql, triggers_lifted

UTC = datetime.UTC
# Noon in New York on Jan 31: the window is Jan 2 to Jan 31 there (UTC-5 in winter).
NOW = datetime.datetime(2025, 1, 31, 17, tzinfo=UTC)
JAN = {day: datetime.date(2025, 1, day) for day in range(1, 32)}
# Moments in UTC, and the New York day each falls on.
LATE_ON_THE_30TH = datetime.datetime(2025, 1, 31, 3, tzinfo=UTC)  # Jan 30, 22:00 in New York
EARLY_ON_THE_31ST = datetime.datetime(2025, 1, 31, 6, tzinfo=UTC)  # Jan 31, 01:00
FIRST_DAY = datetime.datetime(2025, 1, 2, 5, 30, tzinfo=UTC)  # Jan 2, 00:30
BEFORE_THE_WINDOW = datetime.datetime(2025, 1, 2, 4, 30, tzinfo=UTC)  # Jan 1, 23:30


def entries_at(*actions_and_moments: tuple[str, datetime.datetime]) -> None:
    """Entries of these actions, written at these moments (the database sets created_at: a
    superuser moves it)."""
    moved = [(AuditLogFactory(action=action).id, moment) for action, moment in actions_and_moments]
    with triggers_lifted():
        for entry_id, moment in moved:
            run_sql(
                "UPDATE audit_auditlog SET created_at = %s WHERE id = %s",
                params=[db_value(moment), entry_id],
            )


def by_day(series, days: list[datetime.date]) -> dict[str, dict]:
    """{label: {day: count}} of series, the days with nothing left out."""
    return {
        one.label: {day: n for day, n in zip(days, one.values, strict=True) if n} for one in series
    }
