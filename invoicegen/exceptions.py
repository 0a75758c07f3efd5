"""Domain errors raised by services; the API turns them into HTTP answers (invoicegen/api.py)."""

import datetime
import math

from django.utils import timezone


class ConflictError(Exception):
    """The object is not in a state that allows this operation (HTTP 409)."""


class QuotaExceeded(Exception):
    """An allowance of `limit` is used up until `resets_at` (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, *, limit: int, resets_at: datetime.datetime):
        super().__init__(message)
        self.limit = limit
        self.resets_at = resets_at

    def seconds_left(self) -> int:
        return max(1, math.ceil((self.resets_at - timezone.now()).total_seconds()))
