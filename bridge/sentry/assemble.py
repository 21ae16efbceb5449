"""Assemble transactions: hold finished children until their local root ends, within bounds.

A *local root* is a span with no parent, or with a remote parent. When it ends, it and every buffered
descendant form one transaction. Bounds, and what happens at each (nothing is dropped silently):
- ``max_spans``: a transaction holds at most this many children; the rest are dropped and counted;
- ``ttl``: children whose root has not ended within ``ttl`` seconds go out as their own transactions
  (orphans: their topmost span becomes the root);
- ``max_buffered``: when more spans than this wait, the oldest trace's spans go out as orphans;
- children that end after their root (late) go out at once as their own transactions.
Not thread-safe by itself: the caller holds a lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

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
    ) -> None:
        self.max_spans = max_spans
        self.ttl = ttl
        self.max_buffered = max_buffered
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

    def add(self, span: ReadableSpan) -> list[Assembled]:
        """Take a finished span; return the transactions that are now complete."""
        ready: list[Assembled] = []
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + min(1.0, self.ttl / 4)
            ready.extend(self._sweep(now))
        context = span.context
        assert context is not None
        if is_local_root(span):
            bucket = self._buckets.get(context.trace_id) if self._buckets else None
            if bucket is None:  # the common case: a root with nothing buffered (a couple of set operations)
                self._remember_id(context.span_id)
                ready.append((span, []))
                return ready
            children = self._take_descendants(bucket, context.trace_id, context.span_id)
            ready.append((span, children))
            self._remember_sent(span, children)
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
        while self._buffered > self.max_buffered and self._buckets:
            oldest = next(iter(self._buckets))
            ready.extend(self._orphans(self._buckets.pop(oldest)))
        return ready

    def drain(self) -> list[Assembled]:
        """Everything still buffered, as orphan transactions (at shutdown)."""
        ready: list[Assembled] = []
        while self._buckets:
            _, bucket = self._buckets.popitem(last=False)
            ready.extend(self._orphans(bucket))
        return ready

    # -- internals ----------------------------------------------------------------------------------
    def _take_descendants(self, bucket: _Bucket, trace_id: int, root_id: int) -> list[ReadableSpan]:
        taken = _descendants(bucket.spans, root_id)
        for child in taken:
            del bucket.spans[child.context.span_id]  # type: ignore[union-attr]
        self._buffered -= len(taken)
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
        tops = [s for s in spans.values() if s.parent is None or s.parent.span_id not in spans]
        ready: list[Assembled] = []
        for top in sorted(tops, key=lambda s: s.start_time or 0):
            children = self._cap(_descendants(spans, top.context.span_id))  # type: ignore[union-attr]
            ready.append((top, children))
            self._remember_sent(top, children)
        return ready

    def _sweep(self, now: float) -> list[Assembled]:
        ready: list[Assembled] = []
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
