"""OTLP collector faults, each served by a real HTTP server on loopback (or nothing at all, for "refused").

For every fault: the app's responses are unchanged and nothing reaches the app; the Sentry leg gets every
item and flushing is not held up; every span that did not reach the collector is counted
(``bridge.stats().otlp``) with one rate-limited warning; delivery resumes once the collector recovers.
Then what a full batch queue drops, and the deadlines of flush() and shutdown() with a hung collector.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Optional

import pytest

import bridge
from bridge.otlp import SDK_EXPORTER_LOGGER
from tests.faults import (
    BACKEND_TIMEOUT,
    DELIVERED,
    FAULTS,
    ITEMS_PER_ROUND,
    SLOW,
    Stopwatch,
    app,
    assert_responses_unchanged,
    drive,
)
from tests.httpserver import unused_port
from tests.peers.otlp import OtlpReceiver, SpanView, accept
from tests.peers.sentry import SentryReceiver

LOST_WARNING = "otel-sentry-bridge: OTLP export failed; %d spans lost so far"


def of_round(spans: list[SpanView], round_: int) -> list[SpanView]:
    return [span for span in spans if span.attributes.get("url.query") == f"round={round_}"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_collector_costs_the_app_and_the_sentry_leg_nothing_and_every_loss_is_counted(
    fault: str, sentry_receiver: SentryReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with contextlib.ExitStack() as stack:
        port = unused_port()
        receiver: Optional[OtlpReceiver] = None
        answer = FAULTS[fault]
        if answer is not None:
            receiver = stack.enter_context(OtlpReceiver(port=port))
            receiver.responder = answer
        bridge.init(
            otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces",
            dsn=sentry_receiver.dsn,
            otlp_timeout=BACKEND_TIMEOUT,
            bsp_schedule_delay_ms=60_000,  # exports happen at flush(), nowhere else
            service_name="faults",
        )

        # The app's responses are unchanged, and the per-request API never raises into it.
        assert_responses_unchanged()
        # The Sentry leg is not held up: flush waits no longer than asked, and everything reaches Sentry.
        with Stopwatch() as flushing:
            flushed = bridge.flush(0.5)
        assert flushing.seconds < 1.0
        if fault in SLOW:
            assert flushed is False
        elif fault in DELIVERED:
            assert flushed is True
        sentry_receiver.wait_for_items("transaction", 3)
        sentry_receiver.wait_for_items("event", 3)

        # Recovery: the collector answers again (or starts, for "refused").
        before = len(receiver.batches) if receiver is not None else 0
        if receiver is None:
            receiver = stack.enter_context(OtlpReceiver(port=port))
        else:
            receiver.responder = accept
        assert_responses_unchanged(round_=2)
        assert bridge.flush(5 + BACKEND_TIMEOUT)

        # Delivery resumed.
        during = [span for batch in receiver.batches[:before] if batch.accepted for span in batch.spans]
        after = [span for batch in receiver.batches[before:] if batch.accepted for span in batch.spans]
        assert len(of_round(after, 2)) == 3
        # Every span is counted once: exported (the collector's 2xx; a late answer the exporter had given
        # up on is not one) or lost; nothing was dropped or left queued.
        stats = bridge.stats().otlp
        assert stats is not None
        assert (stats.dropped, stats.abandoned, stats.queued) == (0, 0, 0)
        assert stats.exported + stats.failed == 6
        delivered = after + (during if fault in DELIVERED else [])
        assert stats.exported == len(delivered)
        if fault != "refused":  # a refused export may be retried once the collector is back, and succeed
            assert stats.failed == (0 if fault in DELIVERED else 3)
        # One warning says so, with the count; the SDK exporter's own lines are rate-limited too.
        lost_warnings = [r for r in caplog.records if r.msg == LOST_WARNING]
        assert len(lost_warnings) == (1 if stats.failed else 0)
        sdk_lines = Counter(r.msg for r in caplog.records if r.name == SDK_EXPORTER_LOGGER)
        assert all(count == 1 for count in sdk_lines.values()), sdk_lines

        assert len(sentry_receiver.transactions()) == 2 * ITEMS_PER_ROUND["transaction"]
        assert len(sentry_receiver.events()) == 2 * ITEMS_PER_ROUND["error"]


def test_failed_exports_warn_once_with_the_running_total(caplog: pytest.LogCaptureFixture) -> None:
    with OtlpReceiver() as receiver:
        receiver.responder = FAULTS["500"]  # type: ignore[assignment]
        bridge.init(otlp_endpoint=receiver.endpoint, bsp_schedule_delay_ms=60_000)
        middleware = bridge.BridgeMiddleware(app)
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                drive(middleware, 2)
                assert bridge.flush(5)
        receiver.take_problems()
    stats = bridge.stats().otlp
    assert stats is not None and (stats.exported, stats.failed) == (0, 10)
    assert [r.getMessage() for r in caplog.records if r.msg == LOST_WARNING] == [LOST_WARNING % 2]
    # Five failed exports; the SDK exporter logs one line per failure, and at most one gets through.
    assert sum(r.name == SDK_EXPORTER_LOGGER for r in caplog.records) <= 1


def test_spans_dropped_by_a_full_queue_are_counted_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    with OtlpReceiver() as receiver:
        receiver.responder = FAULTS["never-answers"]  # type: ignore[assignment]
        active = bridge.init(
            otlp_endpoint=receiver.endpoint,
            otlp_timeout=30,
            bsp_max_queue_size=50,
            bsp_max_export_batch_size=10,
            bsp_schedule_delay_ms=60_000,
        )
        middleware = bridge.BridgeMiddleware(app)
        drive(middleware, 10)  # a full batch: the exporting thread sends it, and the collector hangs
        receiver.wait_for(1)
        with caplog.at_level(logging.WARNING, logger="bridge"):
            drive(middleware, 200)
        stats = bridge.stats().otlp
        assert stats is not None
        assert (stats.queued, stats.dropped) == (50, 150)  # 50 wait; the oldest made room for newer ones
        warnings = [r.getMessage() for r in caplog.records if r.name == "bridge.batch"]
        assert len(warnings) == 1 and "the OTLP queue is full (50 spans)" in warnings[0]

        with Stopwatch() as stopping:
            bridge.shutdown(0.5)
        assert stopping.seconds < 1.5
        stats = active.stats().otlp
        assert stats is not None and (stats.dropped, stats.abandoned, stats.queued) == (150, 50, 0)


def test_flush_and_shutdown_with_a_hung_collector_keep_their_deadlines_and_sentry_gets_everything(
    sentry_receiver: SentryReceiver,
) -> None:
    with OtlpReceiver() as receiver:
        receiver.responder = FAULTS["never-answers"]  # type: ignore[assignment]
        active = bridge.init(
            otlp_endpoint=receiver.endpoint,
            dsn=sentry_receiver.dsn,
            otlp_timeout=30,
            bsp_max_export_batch_size=5,
            bsp_schedule_delay_ms=60_000,
        )
        middleware = bridge.BridgeMiddleware(app)
        drive(middleware, 5)
        receiver.wait_for(1)  # the exporting thread is stuck on those 5 for 30 s
        drive(middleware, 12)
        # Before: flush() waited for every batch (30 s each here), and gave Sentry's flush what was left.
        with Stopwatch() as flushing:
            assert bridge.flush(0.5) is False
        assert flushing.seconds < 1.0
        sentry_receiver.wait_for_items("transaction", 17)
        # Before: shutdown() waited 30 s for the exporting thread, which exported everything queued first.
        with Stopwatch() as stopping:
            bridge.shutdown(1.0)
        assert stopping.seconds < 1.5
        stats = active.stats()
        assert stats.otlp is not None
        assert (stats.otlp.exported, stats.otlp.abandoned, stats.otlp.queued) == (0, 12, 0)
        assert stats.sentry is not None and stats.sentry.dropped == {}


def test_a_failing_collector_is_not_hammered(otlp_receiver: OtlpReceiver) -> None:
    """After a failed export the next batch waits a moment (the GIL stays with the app's requests)."""
    import time as _time

    from tests.httpserver import Reply as _Reply

    otlp_receiver.responder = lambda request: _Reply(500)
    instance = bridge.init(
        otlp_endpoint=otlp_receiver.endpoint, bsp_max_export_batch_size=10, bsp_schedule_delay_ms=1
    )
    app = bridge.BridgeMiddleware(lambda environ, start_response: (start_response("200 OK", []), [b"ok"])[1])
    began = _time.monotonic()
    for _ in range(2000):
        body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}, lambda *a: None)
        list(body)
        body.close()  # type: ignore[attr-defined]
    bridge.flush(1.0)
    elapsed = _time.monotonic() - began
    attempts = len(otlp_receiver.requests)
    # Without a pause this is one POST per 10 spans: about 200. With the documented 0.25 s after each
    # failure, one per quarter second at most.
    assert attempts <= 2 + elapsed / 0.25, (attempts, elapsed)
    stats = instance.stats().otlp
    assert stats is not None
    assert stats.exported == 0
    in_flight = 10  # at most one batch between the queue and its export's outcome
    assert 2000 - in_flight <= stats.lost + stats.queued <= 2000  # every span is counted somewhere
