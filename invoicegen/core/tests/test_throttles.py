"""The fixed-window counter: a limit per client and window, keys that expire with their window,
and no one held back while the cache is down."""

import time

import pytest
from django.core.cache import cache
from django.test import override_settings

from emails.tests.helpers import unreachable_redis_caches
from invoicegen.core.throttles import FixedWindow

WINDOW = FixedWindow("test-refusals", "2/min")


def test_a_client_is_held_back_once_it_used_up_its_window_and_others_are_not():
    WINDOW.count("198.51.100.7")
    assert WINDOW.retry_after("198.51.100.7") is None
    WINDOW.count("198.51.100.7")

    seconds = WINDOW.retry_after("198.51.100.7")
    assert seconds is not None and 1 <= seconds <= 60
    assert WINDOW.retry_after("203.0.113.9") is None


def test_a_window_ends_and_its_key_expires_with_it():
    window = FixedWindow("test-refusals", "1/s")
    time.sleep(1 - time.time() % 1)
    window.count("198.51.100.7")
    key = f"test-refusals:198.51.100.7:{int(time.time())}"
    assert window.retry_after("198.51.100.7") == 1
    time.sleep(1.1)
    assert window.retry_after("198.51.100.7") is None
    assert cache.get(key) is None


@pytest.mark.parametrize(
    "rate, limit, period", [("30/min", 30, 60), ("5/s", 5, 1), ("9/hour", 9, 3600)]
)
def test_rates_read_as_drf_writes_them(rate, limit, period):
    window = FixedWindow("test", rate)
    assert (window.limit, window.period) == (limit, period)


def test_nothing_is_counted_and_no_one_held_back_while_the_cache_is_down(caplog):
    with override_settings(CACHES=unreachable_redis_caches()):
        for _ in range(3):
            WINDOW.count("198.51.100.7")
        assert WINDOW.retry_after("198.51.100.7") is None
    assert "throttle test-refusals skipped: its cache is unavailable" in caplog.text
