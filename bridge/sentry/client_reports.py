"""Counting what never reached Sentry, and the client reports that tell Sentry about it.

A client report is an envelope item ``client_report`` holding
``{"timestamp": ..., "discarded_events": [{"reason", "category", "quantity"}, ...]}``. Counts are kept
until a report carrying them is confirmed delivered (a 2xx); a report that failed is put back.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from bridge.sentry.envelope import Item

__all__ = ["LossCounter", "report_item"]

Report = dict[str, Any]


class LossCounter:
    """Thread-safe counts of discarded events by (reason, category): pending (to report) and total."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}
        self._total: dict[tuple[str, str], int] = {}
        self._since = 0.0  # when the oldest pending count was recorded

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def record(self, reason: str, category: str, quantity: int = 1) -> bool:
        """Count a loss; True when nothing was pending before (a report just became due later)."""
        if quantity <= 0:
            return False
        key = (reason, category)
        with self._lock:
            first = not self._pending
            if first:
                self._since = self._clock()
            self._pending[key] = self._pending.get(key, 0) + quantity
            self._total[key] = self._total.get(key, 0) + quantity
        return first

    def seconds_until_due(self, interval: float) -> Optional[float]:
        """None when nothing is pending, else how long until a report is due (<= 0: due now)."""
        with self._lock:
            if not self._pending:
                return None
            return self._since + interval - self._clock()

    def take(self) -> Optional[Report]:
        """The pending counts as a client report payload, and forget them (None if nothing pending)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return None
        return {
            "timestamp": time.time(),
            "discarded_events": [
                {"reason": reason, "category": category, "quantity": quantity}
                for (reason, category), quantity in sorted(pending.items())
            ],
        }

    def restore(self, report: Report) -> None:
        """Put back the counts of a report that did not get through (totals are not counted twice)."""
        with self._lock:
            if not self._pending:
                self._since = self._clock()
            for entry in report["discarded_events"]:
                key = (entry["reason"], entry["category"])
                self._pending[key] = self._pending.get(key, 0) + entry["quantity"]

    def totals(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._total)

    def reset_after_fork(self) -> None:
        """In a fork() child: the parent reports its own losses; start from nothing with a fresh lock."""
        self._lock = threading.Lock()
        self._pending = {}
        self._total = {}


def report_item(report: Report) -> Item:
    return Item.json("client_report", report)
