"""Decoded spans → the Sentry leg of their service's DSN, with bounds, back-pressure and a time-to-live tick.

- Routing: ``service.name`` of each span's resource → a DSN (``routes.py``); one leg per distinct DSN.
  Spans of a service without a DSN are dropped, counted, and reported as rejected.
- Order: within one request, children are handed over before local roots, so that a trace whose spans
  came in one request becomes one transaction whatever their order in it. Across requests, children
  that arrive before their root wait for it (up to the time-to-live), and a root waits ``root_delay``
  seconds for children still on their way (concurrent export requests finish in any order); a child
  arriving after that goes out as its own transaction (never dropped).
- Back-pressure: when a leg's outgoing queue is full, the whole request is refused (HTTP 429 with
  ``Retry-After``) before any of it is taken, so that the sender retries it later; while shutting down,
  HTTP 503.
- Bounded memory: each leg's buffer holds at most its share of ``max_buffered_spans`` and
  ``max_buffered_bytes`` (estimated); beyond that, the oldest trace's buffered spans go out as orphan
  transactions.
- A background thread calls each leg's ``expire()`` so that the time-to-live holds when no spans arrive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from opentelemetry.sdk.trace import ReadableSpan

from bridge.receiver.routes import Routes
from bridge.sentry.assemble import is_local_root
from bridge.sentry.dsn import Dsn

__all__ = ["Accepted", "Destination", "Overloaded", "SentrySink", "Sink", "RETRY_AFTER_SECONDS"]

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


class Overloaded(Exception):
    """The request is refused for now: HTTP ``status`` (429 or 503) with ``Retry-After``."""

    def __init__(self, status: int, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


@dataclass
class Accepted:
    dropped: int = 0
    problems: Counter[str] = field(default_factory=Counter)


class Sink(Protocol):
    """What the WSGI app hands decoded spans to."""

    @property
    def draining(self) -> bool: ...

    def accept(self, spans: Sequence[ReadableSpan]) -> Accepted: ...

    def health(self) -> dict[str, Any]: ...


class Destination(Protocol):
    """One DSN's leg, as the sink sees it (``bridge.receiver.legs.LegDestination``)."""

    @property
    def buffered(self) -> int: ...

    def on_end(self, span: ReadableSpan) -> None: ...

    def expire(self) -> None: ...

    def saturated(self) -> bool: ...

    def shutdown(self, timeout: float) -> None: ...


DestinationFactory = Callable[[Dsn, int, Optional[int]], Destination]


def _service(span: ReadableSpan) -> str:
    resource = span.resource
    name = resource.attributes.get("service.name") if resource is not None else None
    return name if isinstance(name, str) else "unknown_service"


class SentrySink:
    def __init__(
        self,
        routes: Routes,
        *,
        environ: Optional[Mapping[str, str]] = None,
        buffer_ttl: float = 60.0,
        root_delay: float = 2.0,
        max_buffered_spans: int = 100_000,
        max_buffered_bytes: Optional[int] = 256 * 1024 * 1024,
        queue_size: Optional[int] = None,
        factory: Optional[DestinationFactory] = None,
    ) -> None:
        self.routes = routes
        self.buffer_ttl = buffer_ttl
        self.root_delay = root_delay
        dsns = routes.dsns
        share = max(1, len(dsns))
        if factory is None:
            env = dict(os.environ if environ is None else environ)

            def factory(dsn: Dsn, spans: int, size: Optional[int]) -> Destination:
                from bridge.receiver.legs import build_leg  # the Sentry leg is imported only when a DSN exists

                return build_leg(
                    dsn,
                    environ=env,
                    ttl=buffer_ttl,
                    root_delay=root_delay,
                    max_buffered_spans=spans,
                    max_buffered_bytes=size,
                    queue_size=queue_size,
                )

        per_bytes = None if max_buffered_bytes is None else max(1, max_buffered_bytes // share)
        self._by_dsn: dict[str, Destination] = {
            dsn.raw: factory(dsn, max(1, max_buffered_spans // share), per_bytes) for dsn in dsns
        }
        self._by_service: dict[str, Optional[Destination]] = {}
        self._no_dsn: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0  # accept() calls in progress; shutdown waits for them
        self._draining = False
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        self._ticker_pid = 0

    # -- the request side ---------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self._draining

    def destination(self, service: str) -> Optional[Destination]:
        try:
            return self._by_service[service]
        except KeyError:
            dsn = self.routes.dsn_for(service)
            found = None if dsn is None else self._by_dsn.get(dsn.raw)
            if len(self._by_service) < 10_000:  # service names come from the network: bound the cache
                self._by_service[service] = found
            return found

    def accept(self, spans: Sequence[ReadableSpan]) -> Accepted:
        """Hand ``spans`` to their legs; raise :class:`Overloaded` (taking none of them) when one is full."""
        with self._lock:
            if self._draining:
                raise Overloaded(503, 1, "the receiver is shutting down")
            self._active += 1
        try:
            return self._accept(spans)
        finally:
            with self._lock:
                self._active -= 1
                if not self._active:
                    self._idle.notify_all()

    def _accept(self, spans: Sequence[ReadableSpan]) -> Accepted:
        self._ensure_ticker()
        accepted = Accepted()
        batches: dict[int, tuple[Destination, list[ReadableSpan]]] = {}
        for span in spans:
            service = _service(span)
            destination = self.destination(service)
            if destination is None:
                accepted.dropped += 1
                accepted.problems[f"no Sentry DSN for service.name {service[:100]!r}: dropped"] += 1
                continue
            batches.setdefault(id(destination), (destination, []))[1].append(span)
        for destination, _ in batches.values():
            if destination.saturated():
                raise Overloaded(429, RETRY_AFTER_SECONDS, "the queue to Sentry is full; retry later")
        for destination, batch in batches.values():
            batch.sort(key=is_local_root)  # children (False) first, then local roots; stable otherwise
            for span in batch:
                try:
                    destination.on_end(span)
                except Exception:
                    logger.warning("otel-sentry-bridge serve: the Sentry leg could not take a span", exc_info=True)
        if accepted.dropped:
            with self._lock:
                for problem, count in accepted.problems.items():
                    self._no_dsn[problem] += count
        return accepted

    def queue_fill(self) -> float:
        """The fullest leg's queue, 0 to 1 (0 for destinations that do not say)."""
        fills = [getattr(d, "fill", lambda: 0.0)() for d in self._by_dsn.values()]
        return float(max(fills, default=0.0))

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self._draining else "ok",
            "destinations": len(self._by_dsn),
            "buffered_spans": sum(d.buffered for d in self._by_dsn.values()),
            "dropped_without_dsn": sum(self._no_dsn.values()),
        }

    # -- time-to-live and shutdown ------------------------------------------------------------------
    def _ensure_ticker(self) -> None:
        if self._ticker_pid == os.getpid() or not self._by_dsn:
            return
        with self._lock:  # started on first use, and again in a fork() child (gunicorn --preload)
            if self._ticker_pid != os.getpid() and not self._draining:
                self._stop = threading.Event()
                interval = min(1.0, self.buffer_ttl / 4, self.root_delay / 2 if self.root_delay > 0 else 1.0)
                interval = max(0.02, interval)
                self._ticker = threading.Thread(
                    target=self._tick, args=(self._stop, interval), name="otel-sentry-bridge-ttl", daemon=True
                )
                self._ticker.start()
                self._ticker_pid = os.getpid()

    def _tick(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            for destination in list(self._by_dsn.values()):
                try:
                    destination.expire()
                except Exception:
                    logger.warning("otel-sentry-bridge serve: expiring buffered spans failed", exc_info=True)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Refuse new spans, send everything buffered and queued within ``timeout`` seconds in all."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._draining = True
            self._stop.set()
            self._idle.wait_for(lambda: not self._active, max(0.0, deadline - time.monotonic()))
        for destination in list(self._by_dsn.values()):
            try:
                destination.shutdown(max(0.1, deadline - time.monotonic()))
            except Exception:
                logger.warning("otel-sentry-bridge serve: a Sentry leg did not shut down cleanly", exc_info=True)
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(max(0.0, deadline - time.monotonic()))
