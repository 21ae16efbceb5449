"""Rate limits a Sentry server announces, per data category, until when.

``X-Sentry-Rate-Limits: retry_after:categories:scope[:reason_code[:namespaces]], ...`` may come with any
response (Bugsink sends ``86400:transaction;span:organization`` on every one). ``retry_after`` is seconds
(possibly fractional); ``categories`` is a ``;``-separated list, empty meaning every category. A 429
without that header limits every category for ``Retry-After`` seconds (or an HTTP date), 60 by default.

Reads (``is_limited``) are lock-free and cheap: the worker thread is the only writer, and a dict lookup is
atomic. Limits only ever extend: a later, shorter announcement does not lift an earlier, longer one.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

__all__ = ["RateLimits", "parse_rate_limits", "parse_retry_after", "ALL", "DEFAULT_RETRY_AFTER"]

ALL = ""  # the key of a limit on every category
DEFAULT_RETRY_AFTER = 60.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_RETRY_AFTER
    return value if math.isfinite(value) and value >= 0 else DEFAULT_RETRY_AFTER


def parse_rate_limits(header: str) -> list[tuple[float, tuple[str, ...]]]:
    """``[(retry_after_seconds, categories), ...]``; ``categories == (ALL,)`` when the list is empty."""
    limits = []
    for entry in header.split(","):
        fields = entry.strip().split(":")
        if len(fields) < 2 or not fields[0].strip():
            continue
        categories = tuple(c.strip() for c in fields[1].split(";") if c.strip()) or (ALL,)
        limits.append((_seconds(fields[0].strip()), categories))
    return limits


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> float:
    """Seconds to wait from a ``Retry-After`` value: a number of seconds or an HTTP date."""
    if not value or not value.strip():
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        return _seconds(text) if text[0].isdigit() else _until_date(text, now)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER


def _until_date(text: str, now: Optional[datetime]) -> float:
    moment = parsedate_to_datetime(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - (now or datetime.now(timezone.utc))).total_seconds())


class RateLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._parsed: tuple[str, list[tuple[float, tuple[str, ...]]]] = ("", [])

    def is_limited(self, category: str) -> bool:
        until = self._until
        if not until:
            return False
        now = self._clock()
        return until.get(category, 0.0) > now or until.get(ALL, 0.0) > now

    def update(self, status: int, headers: Mapping[str, str]) -> list[tuple[str, float]]:
        """Learn from one response; returns the newly imposed limits as ``[(category, seconds)]``."""
        header = headers.get("x-sentry-rate-limits")
        if header:
            if header != self._parsed[0]:  # servers repeat the same header: parse it once
                self._parsed = (header, parse_rate_limits(header))
            limits = self._parsed[1]
        elif status == 429:
            limits = [(parse_retry_after(headers.get("retry-after")), (ALL,))]
        else:
            return []
        now = self._clock()
        imposed = []
        for seconds, categories in limits:
            for category in categories:
                current = self._until.get(category, 0.0)
                if now + seconds > current:
                    self._until[category] = now + seconds
                    if current <= now:
                        imposed.append((category, seconds))
        return imposed

    def active(self) -> dict[str, float]:
        """Seconds left per limited category (``""`` = every category), for `check` and tests."""
        now = self._clock()
        return {category: until - now for category, until in list(self._until.items()) if until > now}
