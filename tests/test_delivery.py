"""What ``flush()`` and ``shutdown()`` promise, against real receivers: everything queued before the call is
delivered when they return True, including every event of a span that recorded several errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import bridge
from tests.faults import drive
from tests.httpserver import Reply
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver


def several_errors(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    for number in range(3):
        try:
            raise ValueError(f"handled {number}")
        except ValueError:
            bridge.capture_exception()
    bridge.capture_message("and a message")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_flush_delivers_every_event_of_a_span_with_several_errors(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    drive(bridge.BridgeMiddleware(several_errors), 2)
    assert bridge.flush(10)
    # No waiting here: what flush() returned True for has arrived.
    events = sentry_receiver.events()
    assert sorted(e.get("logentry", {}).get("formatted") or e["exception"]["values"][-1]["value"] for e in events) == [
        "and a message",
        "and a message",
        "handled 0",
        "handled 0",
        "handled 1",
        "handled 1",
        "handled 2",
        "handled 2",
    ]
    assert len(sentry_receiver.transactions()) == 2


def test_shutdown_delivers_every_event_of_a_span_with_several_errors(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    drive(bridge.BridgeMiddleware(several_errors), 1)
    bridge.shutdown(10)
    assert len(sentry_receiver.events()) == 4
    assert sentry_receiver.client_reports() == []  # nothing was dropped at shutdown


def test_a_span_with_several_errors_dropped_before_conversion_counts_each_event(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    # Each error event is a task of its own: dropped unconverted (here: Sentry rate-limits errors), each
    # counts. Before, the span's events were one task, and a drop counted one event for four.
    sentry_receiver.responder = lambda request: Reply(429, {"X-Sentry-Rate-Limits": "60:error:key"})
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    middleware = bridge.BridgeMiddleware(several_errors)
    drive(middleware, 1)
    assert bridge.flush(5)  # the first error envelope is answered 429: errors are limited from then on
    drive(middleware, 2)
    assert bridge.flush(5)
    stats = bridge.stats().sentry
    assert stats is not None
    assert stats.dropped[("ratelimit_backoff", "error")] == 3 + 2 * 4  # the first one Sentry counted itself
