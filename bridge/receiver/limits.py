"""Per-sender fair shares of the queue to Sentry: the noisiest sender gets 429 before the others.

Each sender (a token's name, or the client address without authentication) is charged the bytes of
its request bodies, as a moving sum that halves every ``half_life`` seconds. While the queue to Sentry
is less than ``threshold`` full, everyone is admitted (the sink still answers 429 when it is full).
From ``threshold`` on, a sender whose moving sum is over its fair share (the total divided by the
number of senders seen recently) is refused with 429 and ``Retry-After``, so that the others keep
their room in the queue until it is really full.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Optional

__all__ = ["SenderLimits", "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 0.5
_FORGET_BELOW = 1.0  # bytes: a sender whose moving sum decayed below this is forgotten
MAX_SENDERS = 10_000  # senders tracked at most (client addresses come from the network)


class SenderLimits:
    def __init__(
        self,
        pressure: Callable[[], float],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        half_life: float = 10.0,
        retry_after: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pressure = pressure  # how full the queue to Sentry is, 0..1
        self.threshold = threshold
        self.retry_after = retry_after
        self._half_life = half_life
        self._decay = math.log(2) / half_life
        self._clock = clock
        self._load: dict[str, float] = {}
        self._total = 0.0
        self._when = clock()
        self._lock = threading.Lock()
        self.refused = 0

    def _age(self) -> None:
        """Rebase the sums to now and forget quiet senders, at most once per half-life (O(senders))."""
        now = self._clock()
        if now - self._when < self._half_life:
            return
        factor = math.exp(-self._decay * (now - self._when))
        self._when = now
        self._total *= factor
        for sender in list(self._load):
            load = self._load[sender] * factor
            if load < _FORGET_BELOW:
                del self._load[sender]
            else:
                self._load[sender] = load

    def _weight(self) -> float:
        # sums are kept in units of self._when: a byte now weighs exp(decay * (now - when)) of them
        return math.exp(self._decay * max(0.0, self._clock() - self._when))

    def admit(self, sender: str) -> Optional[int]:
        """None to admit the request, else the seconds to put in ``Retry-After`` with a 429."""
        if self.threshold >= 1.0 or self.pressure() < self.threshold:
            return None
        with self._lock:
            self._age()
            if len(self._load) < 2 or self._total <= 0:
                return None  # one sender alone is limited by the queue itself
            fair = self._total / len(self._load)
            if self._load.get(sender, 0.0) <= fair:
                return None
            self.refused += 1
            return self.retry_after

    def charge(self, sender: str, amount: int) -> None:
        """Add ``amount`` bytes to ``sender``'s moving sum."""
        if amount <= 0:
            return
        with self._lock:
            self._age()
            if sender not in self._load and len(self._load) >= MAX_SENDERS:
                return
            weighted = amount * self._weight()
            self._load[sender] = self._load.get(sender, 0.0) + weighted
            self._total += weighted

    def senders(self) -> int:
        with self._lock:
            return len(self._load)
