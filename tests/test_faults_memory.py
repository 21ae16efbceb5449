"""Memory stays bounded while both backends are down: 10 000 requests against a collector and a Sentry that
never answer (or refuse every connection), measured with tracemalloc.

The queues fill up to their caps during a warm-up; from then on each new item pushes an old one out (or is
refused), so what the process holds must stop growing: the second half of the run may not add more than
an allowance to what the first half left (what the queues hold varies by some 100 kB as their items are
replaced). A leak of 200 bytes a request would be 1 MB there. The Sentry leg's memory of transactions
already sent (10 000 span ids by default) is set to 500 here, so that the warm-up fills it too. Every item
is still accounted for: sent, queued, in flight, or counted as dropped.
"""

from __future__ import annotations

import contextlib
import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import bridge
from bridge import setup
from bridge.sentry.assemble import Assembler
from tests.faults import FAULTS, app, drive
from tests.httpserver import unused_port
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import PROJECT_ID, PUBLIC_KEY, SentryReceiver

HALF = 5000
ALLOWANCE = 1024 * 1024  # bytes the second half of the run may add
ERROR_EVERY = 20  # one request in 20 records a handled error and a message (two Sentry error items)


def serve(middleware: Any, count: int) -> None:
    for _ in range(count // ERROR_EVERY):
        drive(middleware, ERROR_EVERY - 1, "/ok")
        drive(middleware, 1, "/handled")


@contextlib.contextmanager
def both_down(fault: str) -> Iterator[tuple[str, str]]:
    """(OTLP endpoint, DSN) of a collector and a Sentry that both show ``fault``."""
    if fault == "refused":
        yield (f"http://127.0.0.1:{unused_port()}/v1/traces", f"http://{PUBLIC_KEY}@127.0.0.1:{unused_port()}/1")
        return
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        otlp.responder = sentry.responder = FAULTS[fault]  # type: ignore[assignment]
        yield otlp.endpoint, f"http://{PUBLIC_KEY}@127.0.0.1:{sentry.port}/{PROJECT_ID}"


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("fault", ["never-answers", "refused"])
def test_memory_stays_bounded_over_10000_requests_with_both_backends_down(fault: str) -> None:
    with both_down(fault) as (endpoint, dsn):
        bridge.init(
            otlp_endpoint=endpoint,
            dsn=dsn,
            otlp_timeout=60,
            sentry_timeout=60,
            sentry_queue_size=200,
            bsp_max_queue_size=500,
            bsp_max_export_batch_size=100,
        )
        active = setup.active()
        assert active is not None and active.sentry is not None
        active.sentry.assembler = Assembler(remember_roots=500)
        middleware = bridge.BridgeMiddleware(app)
        serve(middleware, 1000)  # warm-up: every queue and registry reaches its cap
        tracemalloc.start()
        try:
            serve(middleware, HALF)
            first = traced_bytes()
            serve(middleware, HALF)
            second = traced_bytes()
        finally:
            tracemalloc.stop()
        assert second - first < ALLOWANCE, f"{second - first} bytes more after the second {HALF} requests"

        stats = active.stats()
        requests = 1000 + 2 * HALF
        assert stats.otlp is not None and stats.sentry is not None
        # OTLP: at most one batch in flight (the exporter is stuck on it); the rest queued or dropped.
        in_flight = requests - stats.otlp.dropped - stats.otlp.queued - stats.otlp.exported - stats.otlp.failed
        assert stats.otlp.queued == 500 and 0 <= in_flight <= 100
        # Sentry: one transaction per request, and per request to /handled one error item, or two when
        # the worker got to build it (the span's second error event is an envelope of its own). At most
        # one envelope and its follow-up are in flight.
        handled = requests // ERROR_EVERY
        accounted = sum(stats.sentry.dropped.values()) + stats.sentry.queued + stats.sentry.sent
        assert stats.sentry.queued <= 200
        assert requests + handled - 2 <= accounted <= requests + 2 * handled
