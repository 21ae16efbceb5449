"""Sentry faults, each served by a real HTTP server on loopback (or nothing at all, for "refused").

For every fault: the app's responses are unchanged and nothing reaches the app; the OTLP leg gets every
span and flushing is not held up; every item that did not reach Sentry is counted (client reports,
delivered once Sentry is back, plus what Sentry counted itself: the envelopes it answered 429); delivery
resumes once the backend recovers; the transport's warnings are rate-limited. Every envelope the server
sees is judged by Relay's normalizer (the receiver), faults or not.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from typing import Optional

import pytest

import bridge
from bridge import setup
from tests.faults import (
    BACKEND_TIMEOUT,
    DELIVERED,
    FAULTS,
    ITEMS_PER_ROUND,
    RATE_LIMITED,
    SLOW,
    Stopwatch,
    app,
    assert_responses_unchanged,
    discarded,
    drive,
    wait_until,
)
from tests.httpserver import unused_port
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import PROJECT_ID, PUBLIC_KEY, Received, SentryReceiver, accept


def items_by_category(
    received: list[Received], status: Optional[int] = None, accepted: bool = False, round_: Optional[int] = None
) -> Counter[str]:
    """Transaction and error items (not client reports) in envelopes answered ``status`` (or accepted),
    of one round of requests (``?round=N``) or of all."""
    counts: Counter[str] = Counter()
    for envelope in received:
        if (accepted and envelope.accepted) or (status is not None and envelope.status == status):
            for kind, payload in envelope.items:
                query = payload.get("request", {}).get("query_string")
                if kind != "client_report" and (round_ is None or query == f"round={round_}"):
                    counts["transaction" if kind == "transaction" else "error"] += 1
    return counts


def assert_warnings_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    """Each warning from the bridge at most once (the transport logs a kind once a minute)."""
    records = [r for r in caplog.records if r.name.startswith("bridge") and r.levelno >= logging.WARNING]
    lines = Counter(r.getMessage() for r in records)
    assert all(count == 1 for count in lines.values()), lines


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_sentry_costs_the_app_and_the_otlp_leg_nothing_and_every_loss_is_counted(
    fault: str, otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with contextlib.ExitStack() as stack:
        port = unused_port()
        receiver: Optional[SentryReceiver] = None
        answer = FAULTS[fault]
        if answer is not None:
            receiver = stack.enter_context(SentryReceiver(port=port))
            receiver.responder = answer
        bridge.init(
            otlp_endpoint=otlp_receiver.endpoint,
            dsn=f"http://{PUBLIC_KEY}@127.0.0.1:{port}/{PROJECT_ID}",
            sentry_timeout=BACKEND_TIMEOUT,
            service_name="faults",
        )
        transport = setup.active().sentry.transport  # type: ignore[union-attr]

        # The app's responses are unchanged, and the per-request API never raises into it.
        assert_responses_unchanged()
        # The OTLP leg is not held up: every span goes out, and flush waits no longer than asked.
        with Stopwatch() as flushing:
            flushed = bridge.flush(0.5)
        assert flushing.seconds < 1.0
        assert flushed is (fault not in SLOW and fault != "refused")  # a backend that is down is not flushed
        assert len(otlp_receiver.wait_for_spans(3)) == 3

        # Recovery: the limit runs out, or the server answers again (or starts, for "refused").
        if fault in RATE_LIMITED:
            wait_until(lambda: not transport.stats().rate_limits, 5.0, "the rate limit to run out")
        before = len(receiver.received) if receiver is not None else 0
        if receiver is None:
            receiver = stack.enter_context(SentryReceiver(port=port))
        else:
            receiver.responder = accept
        assert_responses_unchanged(round_=2)
        assert bridge.flush(5 + BACKEND_TIMEOUT)

        # Delivery resumed: everything of the second round arrived.
        during, after = receiver.received[:before], receiver.received[before:]
        assert items_by_category(after, accepted=True, round_=2) == ITEMS_PER_ROUND
        # Every item is accounted for: delivered (a 2xx, garbage body or not; a slow answer the bridge gave
        # up on is not), counted by Sentry itself (the envelopes it answered 429), or in a client report
        # sent once Sentry was back.
        report_payloads = [payload for r in after if r.accepted for kind, payload in r.items if kind == "client_report"]
        reports = discarded(report_payloads)
        accounted = Counter({category: n for (_, category), n in reports.items()})
        accounted += items_by_category(during, status=429) + items_by_category(after, accepted=True)
        if fault in DELIVERED:
            accounted += items_by_category(during, accepted=True)
        assert accounted == {category: 2 * n for category, n in ITEMS_PER_ROUND.items()}, (reports, fault)
        # The transport's own figures agree with what Sentry was told.
        assert transport.stats().dropped == reports
        if fault in SLOW or fault == "refused":  # some failed; the rest waited in the queue, and went out later
            assert reports and {reason for reason, _ in reports} == {"network_error"}
        elif fault not in DELIVERED and fault not in RATE_LIMITED:
            reason = "send_error" if fault in ("413", "500") else "network_error"
            assert reports == {(reason, "transaction"): 3, (reason, "error"): 3}

        assert len(otlp_receiver.spans()) == 6
        receiver.assert_all_valid()
        assert_warnings_rate_limited(caplog)


def test_sentry_timeout_bounds_each_request_to_a_hung_sentry(otlp_receiver: OtlpReceiver) -> None:
    with SentryReceiver() as receiver:
        receiver.responder = FAULTS["never-answers"]  # type: ignore[assignment]
        bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=receiver.dsn, sentry_timeout=0.3)
        drive(bridge.BridgeMiddleware(app), 1)
        with Stopwatch() as flushing:
            assert bridge.flush(5)  # the envelope failed after 0.3 s: done, and counted
        assert 0.3 <= flushing.seconds < 2.0
        stats = bridge.stats().sentry
        assert stats is not None and stats.dropped == {("network_error", "transaction"): 1}


def test_sentry_timeout_is_an_option() -> None:
    from bridge.config import Options
    from bridge.errors import ConfigError

    assert Options.resolve({}).sentry_timeout == 5.0
    assert Options.resolve({"sentry_timeout": "0.25"}).sentry_timeout == 0.25
    with pytest.raises(ConfigError, match="sentry_timeout"):
        Options.resolve({"sentry_timeout": 0})


def test_shutdown_with_a_hung_sentry_keeps_its_deadline_and_counts_what_it_abandons(
    otlp_receiver: OtlpReceiver,
) -> None:
    with SentryReceiver() as receiver:
        receiver.responder = FAULTS["never-answers"]  # type: ignore[assignment]
        bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=receiver.dsn, sentry_timeout=30)
        active = setup.active()
        assert active is not None
        drive(bridge.BridgeMiddleware(app), 20)
        receiver.wait_for(1)  # the worker is stuck on the first envelope
        with Stopwatch() as stopping:
            bridge.shutdown(1.0)
        assert stopping.seconds < 1.5
        stats = active.stats()
        assert stats.sentry is not None and stats.sentry.dropped == {("shutdown", "transaction"): 19}
        assert stats.otlp is not None and stats.otlp.exported == 20  # the OTLP leg flushed meanwhile
        assert len(otlp_receiver.spans()) == 20


def test_stats_without_a_bridge_and_without_a_sentry_leg(otlp_receiver: OtlpReceiver) -> None:
    assert bridge.stats() == bridge.BridgeStats(otlp=None, sentry=None)
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    drive(bridge.BridgeMiddleware(app), 2)
    assert bridge.flush(5)
    stats = bridge.stats()
    assert stats.sentry is None
    assert stats.otlp == bridge.OtlpStats(exported=2, failed=0, dropped=0, abandoned=0, queued=0)
    assert stats.otlp.lost == 0


def test_a_refusing_sentry_is_not_retried_in_a_busy_loop() -> None:
    """A refused connection fails at once: the worker waits a moment before it builds the next envelope
    (building and failing envelope after envelope held the GIL from the app's requests), and what it did
    not get to stays queued for when Sentry is back."""
    from bridge.sentry.dsn import Dsn
    from bridge.sentry.envelope import Envelope
    from bridge.sentry.transport import Transport

    port = unused_port()
    transport = Transport(Dsn.parse(f"http://{PUBLIC_KEY}@127.0.0.1:{port}/{PROJECT_ID}"))
    built: list[int] = []

    def build() -> Envelope:
        built.append(1)
        return Envelope.for_event({"event_id": "0" * 32, "message": "m", "level": "info"})

    try:
        for _ in range(100):
            assert transport.submit("error", build)
        with Stopwatch() as waiting:
            assert transport.flush(0.6) is False  # Sentry is down: not flushed
        assert len(built) <= 1 + waiting.seconds / 0.25 + 1  # one try per 0.25 s, not 100 in a row
        assert transport.stats().queued >= 90
        with SentryReceiver(port=port) as receiver:
            assert transport.flush(10)
            assert len(receiver.events()) == 100 - sum(transport.stats().dropped.values())
    finally:
        transport.shutdown(0.5)
