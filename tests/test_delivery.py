"""What ``flush()`` and ``shutdown()`` promise, against real receivers: everything queued before the call is
delivered when they return True, including every event of a span that recorded several errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import bridge
from tests.faults import drive
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
