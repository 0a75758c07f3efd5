"""Domain errors raised by services; the API turns them into HTTP answers (invoicegen/api.py)."""

import datetime
import math

from django.utils import timezone


class ConflictError(Exception):
    """The object is not in a state that allows this operation (HTTP 409)."""


class TryLater(Exception):
    """Refused until `until` (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, *, until: datetime.datetime):
        super().__init__(message)
        self.until = until

    def seconds_left(self) -> int:
        return max(1, math.ceil((self.until - timezone.now()).total_seconds()))

    def details(self) -> dict:
        """What the answer says besides `detail`."""
        return {}


class LockedOut(TryLater):
    """Too many failed logins for this email: every login is refused until `until`."""

    def __init__(self, *, until: datetime.datetime):
        super().__init__("Too many failed logins for this account.", until=until)


class QuotaExceeded(TryLater):
    """An allowance of `limit` is used up until `until`."""

    def __init__(self, message: str, *, limit: int, until: datetime.datetime):
        super().__init__(message, until=until)
        self.limit = limit

    def details(self) -> dict:
        return {"limit": self.limit, "resets_at": self.until}
