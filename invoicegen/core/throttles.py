"""A fixed-window counter in the project's cache (Redis in production), for throttles that
count something other than requests: DRF's throttles (core/api.py) count every request and
keep a list of its times, where this keeps one integer per client and window, which expires
with its window."""

import logging
import math
import time
from dataclasses import dataclass

from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class FixedWindow:
    """At most `rate` ("30/min", written as DRF's rates are) events per client in each window
    of the rate's period. A counter store that is down counts nothing and holds no one back:
    an outage of the cache must not become an outage of what it guards."""

    scope: str
    rate: str

    @property
    def limit(self) -> int:
        return int(self.rate.split("/")[0])

    @property
    def period(self) -> int:
        return PERIODS[self.rate.split("/")[1][0]]

    def _key(self, client: str, now: float) -> str:
        return f"{self.scope}:{client}:{int(now // self.period)}"

    def _seconds_left(self, now: float) -> int:
        return max(1, math.ceil(self.period - now % self.period))

    def count(self, client: str) -> None:
        now = time.time()
        key = self._key(client, now)
        try:
            if not cache.add(key, 1, timeout=self._seconds_left(now)):
                cache.incr(key)
        except ValueError:  # the window ended between add and incr: its count no longer matters
            pass
        except (RedisError, OSError):
            logger.warning("throttle %s skipped: its cache is unavailable", self.scope)

    def retry_after(self, client: str) -> int | None:
        """Seconds until the window ends when the client has used it up, else None."""
        now = time.time()
        try:
            counted = cache.get(self._key(client, now), 0)
        except (RedisError, OSError):
            logger.warning("throttle %s skipped: its cache is unavailable", self.scope)
            return None
        return self._seconds_left(now) if counted >= self.limit else None
