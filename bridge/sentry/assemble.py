"""Assemble transactions: hold finished children until their local root ends, within bounds.

A *local root* is a span with no parent, or with a remote parent. When it ends, it and every buffered
descendant form one transaction. Bounds, and what happens at each (nothing is dropped silently):
- ``max_spans``: a transaction holds at most this many children; the rest are dropped and counted;
- ``ttl``: children whose root has not ended within ``ttl`` seconds go out as their own transactions
  (orphans: their topmost span becomes the root);
- ``max_buffered``: when more spans than this wait, the oldest trace's spans go out as orphans;
- ``max_buffered_bytes`` (with ``weigh``, the estimated bytes of a span): the same, by estimated memory;
- children that end after their root (late) go out at once as their own transactions;
- ``root_delay`` (0 in process, where a root always ends after its children): a local root waits this
  long before its transaction goes out, so that children arriving just after it (spans received from
  concurrent export requests) still join it. Waiting roots count towards the bounds.
The time-to-live is checked as spans arrive, and by ``sweep()`` (for callers that see idle periods).
Not thread-safe by itself: the caller holds a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["Assembler", "Assembled"]

Assembled = tuple[ReadableSpan, list[ReadableSpan]]


@dataclass
class _Bucket:
    """The buffered children of one trace, by span id."""

    created: float
    spans: dict[int, ReadableSpan] = field(default_factory=dict)


def is_local_root(span: ReadableSpan) -> bool:
    parent = span.parent
    return parent is None or parent.is_remote


class Assembler:
    def __init__(
        self,
        *,
        max_spans: int = 1000,
        ttl: float = 60.0,
        max_buffered: int = 20000,
        remember_roots: int = 10000,
        clock: Callable[[], float] = time.monotonic,
        max_buffered_bytes: Optional[int] = None,
        weigh: Optional[Callable[[ReadableSpan], int]] = None,
        root_delay: float = 0.0,
    ) -> None:
        self.max_spans = max_spans
        self.ttl = ttl
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self._weigh = weigh
        self._bytes = 0
        self.root_delay = root_delay
        self._roots: OrderedDict[int, tuple[float, ReadableSpan]] = OrderedDict()  # waiting: (due, root)
        self._interval = min(1.0, ttl / 4, root_delay / 2) if root_delay > 0 else min(1.0, ttl / 4)
        self._remember = remember_roots
        self._clock = clock
        self._buckets: OrderedDict[int, _Bucket] = OrderedDict()  # by trace id, oldest first
        self._buffered = 0
        # Span ids already sent in a transaction (to recognize late children): the last remember_roots of
        # them, in a ring (oldest forgotten first) with a set for lookups (half an OrderedDict's memory).
        self._finished: set[int] = set()
        self._sent_order: deque[int] = deque()
        self._next_sweep = 0.0
        self.dropped_spans = 0  # over max_spans: counted for client reports

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def buffered_bytes(self) -> int:
        """The estimated memory of the buffered spans (0 without ``weigh``)."""
        return self._bytes

    def _over(self) -> bool:
        if self._buffered > self.max_buffered:
            return True
        return self.max_buffered_bytes is not None and self._bytes > self.max_buffered_bytes

    def _weight(self, spans: Iterable[ReadableSpan]) -> int:
        weigh = self._weigh
        return 0 if weigh is None else sum(weigh(span) for span in spans)

    def add(self, span: ReadableSpan) -> list[Assembled]:
        """Take a finished span; return the transactions that are now complete."""
        ready: list[Assembled] = []
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._interval
            ready.extend(self._sweep(now))
        context = span.context
        assert context is not None
        if is_local_root(span):
            if self.root_delay <= 0:
                ready.append(self._complete(span))
                return ready
            self._roots[context.span_id] = (now + self.root_delay, span)
            self._buffered += 1
            self._bytes += self._weight((span,))
            self._bound(ready)
            return ready
        parent = span.parent
        assert parent is not None
        if parent.span_id in self._finished:  # late: its transaction has already gone out
            ready.append((span, []))
            self._remember_sent(span, [])
            return ready
        bucket = self._buckets.get(context.trace_id)
        if bucket is None:
            bucket = self._buckets[context.trace_id] = _Bucket(now)
        bucket.spans[context.span_id] = span
        self._buffered += 1
        self._bytes += self._weight((span,))
        self._bound(ready)
        return ready

    def sweep(self) -> list[Assembled]:
        """Waiting roots that are due, and children whose time-to-live is over (as orphan transactions)."""
        now = self._clock()
        self._next_sweep = now + self._interval
        return self._sweep(now)

    def drain(self) -> list[Assembled]:
        """Everything still buffered: waiting roots with their children, then the rest as orphans (at shutdown)."""
        ready: list[Assembled] = []
        self._release_roots(None, ready)
        while self._buckets:
            _, bucket = self._buckets.popitem(last=False)
            ready.extend(self._orphans(bucket))
        return ready

    # -- internals ----------------------------------------------------------------------------------
    def _complete(self, root: ReadableSpan) -> Assembled:
        """A local root and its buffered descendants: a transaction, now."""
        context = root.context
        assert context is not None
        bucket = self._buckets.get(context.trace_id) if self._buckets else None
        if bucket is None:  # the common case: a root with nothing buffered (a couple of set operations)
            self._remember_id(context.span_id)
            return root, []
        children = self._take_descendants(bucket, context.trace_id, context.span_id)
        self._remember_sent(root, children)
        return root, children

    def _release_roots(self, now: Optional[float], ready: list[Assembled], limit: Optional[int] = None) -> None:
        """Waiting roots due by ``now`` (all when None; at most ``limit``), oldest first, into ``ready``."""
        released = 0
        while self._roots and (limit is None or released < limit):
            span_id, (due, root) = next(iter(self._roots.items()))
            if now is not None and due > now:
                break
            del self._roots[span_id]
            self._buffered -= 1
            self._bytes -= self._weight((root,))
            ready.append(self._complete(root))
            released += 1

    def _bound(self, ready: list[Assembled]) -> None:
        """Over a bound: waiting roots go out first (with their children), then the oldest trace's spans."""
        while self._over() and (self._roots or self._buckets):
            if self._roots:
                self._release_roots(None, ready, limit=1)
            else:
                oldest = next(iter(self._buckets))
                ready.extend(self._orphans(self._buckets.pop(oldest)))

    def _take_descendants(self, bucket: _Bucket, trace_id: int, root_id: int) -> list[ReadableSpan]:
        taken = _descendants(bucket.spans, root_id)
        for child in taken:
            del bucket.spans[child.context.span_id]  # type: ignore[union-attr]
        self._buffered -= len(taken)
        self._bytes -= self._weight(taken)
        if not bucket.spans:
            del self._buckets[trace_id]
        return self._cap(taken)

    def _cap(self, children: list[ReadableSpan]) -> list[ReadableSpan]:
        if len(children) > self.max_spans:
            children.sort(key=lambda s: s.start_time or 0)
            self.dropped_spans += len(children) - self.max_spans
            del children[self.max_spans :]
        return children

    def _orphans(self, bucket: _Bucket) -> list[Assembled]:
        """Split a bucket (already removed from the buffer) into transactions rooted at its topmost spans."""
        spans = bucket.spans
        self._buffered -= len(spans)
        self._bytes -= self._weight(spans.values())
        tops = [s for s in spans.values() if s.parent is None or s.parent.span_id not in spans]
        ready: list[Assembled] = []
        for top in sorted(tops, key=lambda s: s.start_time or 0):
            children = self._cap(_descendants(spans, top.context.span_id))  # type: ignore[union-attr]
            ready.append((top, children))
            self._remember_sent(top, children)
        return ready

    def _sweep(self, now: float) -> list[Assembled]:
        ready: list[Assembled] = []
        self._release_roots(now, ready)
        while self._buckets:
            trace_id, bucket = next(iter(self._buckets.items()))
            if now - bucket.created < self.ttl:
                break
            del self._buckets[trace_id]
            ready.extend(self._orphans(bucket))
        return ready

    def _remember_sent(self, root: ReadableSpan, children: Sequence[ReadableSpan]) -> None:
        for span in (root, *children):
            self._remember_id(span.context.span_id)  # type: ignore[union-attr]

    def _remember_id(self, span_id: int) -> None:
        if span_id in self._finished:
            return
        self._finished.add(span_id)
        order = self._sent_order
        order.append(span_id)
        if len(order) > self._remember:
            self._finished.discard(order.popleft())


def _descendants(spans: dict[int, ReadableSpan], root_id: int) -> list[ReadableSpan]:
    """Every span in ``spans`` below ``root_id``, parents before children."""
    by_parent: dict[int, list[ReadableSpan]] = {}
    for child in spans.values():
        if child.parent is not None:
            by_parent.setdefault(child.parent.span_id, []).append(child)
    found: list[ReadableSpan] = []
    pending = [root_id]
    while pending:
        for child in by_parent.get(pending.pop(), ()):
            found.append(child)
            pending.append(child.context.span_id)  # type: ignore[union-attr]
    return found
