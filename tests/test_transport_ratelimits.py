"""Parsing what Sentry servers say about rate limits, and remembering it per category."""
from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from bridge.sentry.ratelimits import ALL, RateLimits, parse_rate_limits, parse_retry_after


def test_parses_float_seconds_multiple_categories_and_empty_meaning_all() -> None:
    header = "2.5:transaction;span:organization:quota_exceeded, 60::key, 10:error:project:x:ns1;ns2"
    assert parse_rate_limits(header) == [(2.5, ("transaction", "span")), (60.0, (ALL,)), (10.0, ("error",))]


def test_garbage_entries_are_skipped_and_bad_numbers_default_to_60() -> None:
    assert parse_rate_limits("nonsense, :error:org, abc:error:org, -5:span, inf:x") == [
        (60.0, ("error",)),
        (60.0, ("span",)),
        (60.0, ("x",)),
    ]


def test_retry_after_seconds_date_and_default() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:02:00 GMT", now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) == parse_retry_after("") == parse_retry_after("soon") == 60.0


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    for seconds, categories in parse_rate_limits(text):
        assert seconds >= 0 and categories
    assert parse_retry_after(text) >= 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limits_apply_per_category_expire_and_only_extend() -> None:
    clock = FakeClock()
    limits = RateLimits(clock)
    imposed = limits.update(200, {"x-sentry-rate-limits": "10:transaction;span:organization"})
    assert imposed == [("transaction", 10.0), ("span", 10.0)]
    assert limits.is_limited("transaction") and not limits.is_limited("error")
    assert limits.update(200, {"x-sentry-rate-limits": "1:transaction:organization"}) == []  # shorter: ignored
    clock.now += 9.9
    assert limits.is_limited("transaction")
    clock.now += 0.2
    assert not limits.is_limited("transaction")


def test_429_without_header_limits_everything_by_retry_after() -> None:
    clock = FakeClock()
    limits = RateLimits(clock)
    assert limits.update(500, {"retry-after": "30"}) == []  # Retry-After counts only with a 429
    assert limits.update(429, {"retry-after": "30"}) == [(ALL, 30.0)]
    assert limits.is_limited("error") and limits.is_limited("transaction")
    assert limits.active() == {ALL: 30.0}
    clock.now += 31
    assert not limits.is_limited("error")
    assert limits.update(429, {}) == [(ALL, 60.0)]
