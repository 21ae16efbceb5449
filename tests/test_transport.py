"""The Sentry transport against a real loopback HTTP server: what goes on the wire, what is dropped and
counted, and that the caller is never held up. Every envelope captured is judged by sentry-sdk's parser
and Relay's normalizer."""
from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

import pytest
from sentry_sdk.envelope import Envelope as SdkEnvelope

from bridge.sentry.dsn import Dsn
from bridge.sentry.envelope import Envelope
from bridge.sentry.http import HttpClient, Response
from bridge.sentry.transport import Transport
from tests.httpserver import RecordingServer, Reply, Request, unused_port
from tests.judges import assert_valid_envelope

KEY = "0123456789abcdef0123456789abcdef"


def dsn(port: int) -> Dsn:
    return Dsn.parse(f"http://{KEY}@127.0.0.1:{port}/42")


def transaction_event() -> dict[str, Any]:
    now = time.time()
    return {
        "event_id": uuid.uuid4().hex,
        "type": "transaction",
        "platform": "python",
        "transaction": "GET /users/{id}",
        "transaction_info": {"source": "route"},
        "start_timestamp": now - 0.02,
        "timestamp": now,
        "contexts": {
            "trace": {
                "trace_id": uuid.uuid4().hex,
                "span_id": uuid.uuid4().hex[:16],
                "op": "http.server",
                "status": "ok",
            }
        },
        "spans": [],
    }


def error_event() -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "exception": {
            "values": [{"type": "ValueError", "value": "boom", "mechanism": {"type": "wsgi", "handled": False}}]
        },
    }


def build(event: dict[str, Any]) -> Callable[[], Envelope]:
    envelope = Envelope.for_event(event)
    return lambda: envelope


def judged(request: Request) -> list[tuple[str, dict[str, Any]]]:
    return assert_valid_envelope(request.body, request.headers.get("content-encoding", ""))


def report_of(request: Request) -> dict[tuple[str, str], int]:
    [report] = [payload for kind, payload in judged(request) if kind == "client_report"]
    return {(e["reason"], e["category"]): e["quantity"] for e in report["discarded_events"]}


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as recording:
        yield recording


@pytest.fixture
def transports() -> Iterator[list[Transport]]:
    made: list[Transport] = []
    yield made
    for transport in made:
        transport.shutdown(0.2)


@pytest.fixture
def make(transports: list[Transport]) -> Callable[..., Transport]:
    def factory(port: int, **options: Any) -> Transport:
        transport = Transport(dsn(port), **options)
        transports.append(transport)
        return transport

    return factory


def test_posts_gzip_envelopes_with_auth_over_one_kept_alive_connection(server: RecordingServer, make: Any) -> None:
    transport = make(server.port)
    events = [transaction_event() if i % 2 else error_event() for i in range(40)]
    assert all(transport.submit("transaction" if i % 2 else "error", build(e)) for i, e in enumerate(events))
    assert transport.flush(5)
    requests = list(server.requests)  # no waiting: flush returned once every answer was in
    assert len(requests) == 40 and server.connections == 1
    for request, event in zip(requests, events):
        assert request.path == "/api/42/envelope/"
        assert request.body[:2] == b"\x1f\x8b"
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["content-type"] == "application/x-sentry-envelope"
        assert request.headers["x-sentry-auth"] == dsn(server.port).auth_header("otel-sentry-bridge/0.1.0")
        assert request.headers["user-agent"] == "otel-sentry-bridge/0.1.0"
        assert request.headers["host"] == f"127.0.0.1:{server.port}"
        [(kind, payload)] = judged(request)
        assert kind == ("transaction" if event.get("type") else "event")
        assert payload["event_id"] == event["event_id"]
    stats = transport.stats()
    assert (stats.sent, stats.failed, stats.dropped, stats.queued) == (40, {}, {}, 0)


def test_uncompressed_when_asked(server: RecordingServer, make: Any) -> None:
    transport = make(server.port, compress=False)
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    [request] = server.wait_for(1)
    assert "content-encoding" not in request.headers
    assert judged(request)[0][0] == "event"


def test_sentry_sdk_parser_reads_envelope_and_client_report(server: RecordingServer, make: Any) -> None:
    transport = make(server.port)
    transport.record_lost("sample_rate", "transaction", 3)
    event = error_event()
    transport.submit("error", build(event))
    assert transport.flush(5)
    [request] = server.wait_for(1)
    parsed = SdkEnvelope.deserialize(gzip.decompress(request.body))
    assert parsed.headers["event_id"] == event["event_id"]
    assert "sent_at" in parsed.headers
    assert [item.type for item in parsed.items] == ["event", "client_report"]
    sent_event = parsed.items[0].payload.json
    assert sent_event is not None and sent_event["exception"]["values"][0]["value"] == "boom"
    report = json.loads(parsed.items[1].get_bytes())  # sentry-sdk parses only events' payloads itself
    assert isinstance(report["timestamp"], float)
    assert report["discarded_events"] == [{"reason": "sample_rate", "category": "transaction", "quantity": 3}]
    assert transport.stats().client_reports == 1


def test_server_closing_idle_connections_is_transparent(make: Any) -> None:
    with RecordingServer(lambda r: Reply(close=True)) as server:
        transport = make(server.port)
        for _ in range(5):
            transport.submit("error", build(error_event()))
        assert transport.flush(5)
        assert len(server.wait_for(5)) == 5
    assert server.connections == 5
    assert transport.stats().failed == {}


def test_rate_limit_drops_only_its_categories_and_is_reported_later(server: RecordingServer, make: Any) -> None:
    server.responder = lambda r: Reply(headers={"X-Sentry-Rate-Limits": "2.5:transaction;span:organization:quota"})
    transport = make(server.port)
    transport.submit("transaction", build(transaction_event()))
    assert transport.flush(5)
    assert transport.is_rate_limited("transaction") and not transport.is_rate_limited("error")
    assert 2.0 < transport.stats().rate_limits["transaction"] <= 2.5
    assert transport.submit("transaction", build(transaction_event())) is False
    assert transport.submit("transaction", build(transaction_event())) is False
    assert transport.submit("error", build(error_event())) is True
    assert transport.flush(5)
    first, second = server.wait_for(2)
    assert [kind for kind, _ in judged(second)] == ["event", "client_report"]
    assert report_of(second) == {("ratelimit_backoff", "transaction"): 2}
    assert transport.stats().dropped == {("ratelimit_backoff", "transaction"): 2}


def test_rate_limit_learned_after_submit_drops_what_is_queued(server: RecordingServer, make: Any) -> None:
    gate = threading.Event()

    def responder(request: Request) -> Reply:
        gate.wait(5)
        return Reply(headers={"X-Sentry-Rate-Limits": "60:transaction:organization"})

    server.responder = responder
    transport = make(server.port)
    assert transport.submit("transaction", build(transaction_event()))
    assert transport.submit("transaction", build(transaction_event()))  # queued behind the first
    gate.set()
    assert transport.flush(5)
    assert len(server.requests) == 2  # the first, then the client report for the second
    assert report_of(server.requests[1]) == {("ratelimit_backoff", "transaction"): 1}


def test_empty_categories_limit_everything_but_client_reports(server: RecordingServer, make: Any) -> None:
    server.responder = lambda r: Reply(headers={"X-Sentry-Rate-Limits": "60::organization"})
    transport = make(server.port)
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    assert transport.submit("error", build(error_event())) is False
    assert transport.submit("transaction", build(transaction_event())) is False
    assert transport.flush(5)  # sends the client report alone
    first, second = server.wait_for(2)
    assert [kind for kind, _ in judged(second)] == ["client_report"]
    assert report_of(second) == {("ratelimit_backoff", "error"): 1, ("ratelimit_backoff", "transaction"): 1}


@pytest.mark.parametrize(("retry_after", "seconds"), [("120", 120.0), (None, 60.0)])
def test_429_limits_everything_by_retry_after(
    server: RecordingServer, make: Any, retry_after: Optional[str], seconds: float
) -> None:
    server.responder = lambda r: Reply(429, {"Retry-After": retry_after} if retry_after else {})
    transport = make(server.port)
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    assert transport.is_rate_limited("error") and transport.is_rate_limited("transaction")
    stats = transport.stats()
    assert seconds - 5 < stats.rate_limits[""] <= seconds
    assert stats.failed == {"rate_limited": 1}
    assert stats.dropped == {}  # the server counted the one it refused; not reported twice


@pytest.mark.parametrize("status", [413, 400, 500, 503])
def test_error_statuses_are_send_errors_and_reported_once_the_server_recovers(
    server: RecordingServer, make: Any, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server.responder = lambda r: Reply(status, body=b"nope")
    transport = make(server.port)
    with caplog.at_level(logging.WARNING, "bridge.sentry.transport"):
        transport.submit("transaction", build(transaction_event()))
        transport.submit("transaction", build(transaction_event()))
        assert transport.flush(5)
    assert len(caplog.records) == 1  # one line per kind of failure per minute
    assert ("too large" in caplog.text) == (status == 413)
    stats = transport.stats()
    assert stats.failed == {"send_error": 3}  # both, and the client report flush tried to send about them
    assert stats.dropped == {("send_error", "transaction"): 2}
    server.responder = lambda r: Reply()
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    assert report_of(server.requests[-1]) == {("send_error", "transaction"): 2}


def test_200_with_garbage_body_is_a_success(server: RecordingServer, make: Any) -> None:
    server.responder = lambda r: Reply(200, {"Content-Type": "text/html"}, b"\x00\xff<html>not json")
    transport = make(server.port)
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    assert (transport.stats().sent, transport.stats().failed) == (1, {})


def test_refused_is_a_network_error_and_delivery_resumes_when_the_backend_comes_back(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    port = unused_port()
    transport = make(port)
    with caplog.at_level(logging.WARNING, "bridge.sentry.transport"):
        for _ in range(3):
            assert transport.submit("error", build(error_event()))
        assert transport.flush(5)  # dropped counts as done
    assert len(caplog.records) == 1 and "could not reach Sentry" in caplog.text
    assert transport.stats().failed == {"network_error": 4}  # 3 events and the client report about them
    assert transport.stats().dropped == {("network_error", "error"): 3}
    with RecordingServer(port=port) as server:
        event = error_event()
        transport.submit("error", build(event))
        assert transport.flush(5)
        [request] = server.wait_for(1)
    assert judged(request)[0][1]["event_id"] == event["event_id"]
    assert report_of(request) == {("network_error", "error"): 3}


def test_hanging_backend_never_holds_up_the_caller(make: Any) -> None:
    with RecordingServer(lambda r: Reply(hang=True)) as server:
        transport = make(server.port, queue_size=10, timeout=5)
        assert transport.submit("transaction", build(transaction_event()))
        server.wait_for(1)  # the worker is now stuck on this request
        accepted = [transport.submit("transaction", build(transaction_event())) for _ in range(30)]
        assert accepted == [True] * 10 + [False] * 20
        assert transport.stats().dropped == {("queue_overflow", "transaction"): 20}
        assert transport.stats().queued == 10

        started = time.monotonic()
        assert transport.flush(0.5) is False
        assert 0.5 <= time.monotonic() - started < 1.5

        started = time.monotonic()
        transport.shutdown(0.5)
        assert time.monotonic() - started < 1.5
        assert transport.submit("error", build(error_event())) is False
    dropped = transport.stats().dropped
    assert dropped[("shutdown", "transaction")] == 10
    assert dropped[("shutdown", "error")] == 1


def test_shutdown_with_unreachable_backend_is_bounded(make: Any) -> None:
    transport = make(unused_port())
    for _ in range(50):
        transport.submit("error", build(error_event()))
    started = time.monotonic()
    transport.shutdown(1.0)
    assert time.monotonic() - started < 2.0
    stats = transport.stats()
    assert stats.queued == 0
    assert sum(stats.dropped.values()) == 50


def test_builder_runs_on_the_worker_and_its_failures_are_counted(
    server: RecordingServer, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    threads: list[threading.Thread] = []

    def failing() -> Envelope:
        threads.append(threading.current_thread())
        raise RuntimeError("converter bug")

    transport = make(server.port)
    with caplog.at_level(logging.WARNING, "bridge.sentry.transport"):
        for _ in range(3):
            assert transport.submit("transaction", failing)
        assert transport.submit("transaction", lambda: None)  # nothing to send
        assert transport.flush(5)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert len(caplog.records) == 1 and "converter bug" in caplog.text
    [request] = server.wait_for(1)  # only the client report, sent alone by flush
    assert [kind for kind, _ in judged(request)] == ["client_report"]
    assert report_of(request) == {("internal_sdk_error", "transaction"): 3}


def test_a_builder_raising_system_exit_does_not_end_the_worker(server: RecordingServer, make: Any) -> None:
    def exits() -> Envelope:
        raise SystemExit(3)

    transport = make(server.port)
    transport.submit("error", exits)
    event = error_event()
    transport.submit("error", build(event))
    assert transport.flush(5)
    [request] = server.requests
    assert judged(request)[0][1]["event_id"] == event["event_id"]
    assert report_of(request) == {("internal_sdk_error", "error"): 1}


def test_losses_alone_are_reported_after_the_interval_and_then_forgotten(server: RecordingServer, make: Any) -> None:
    transport = make(server.port, client_report_interval=0.2)
    transport.record_lost("sample_rate", "transaction", 5)
    transport.record_lost("before_send", "error")
    [request] = server.wait_for(1)  # no flush: the worker sent it by itself
    assert report_of(request) == {("sample_rate", "transaction"): 5, ("before_send", "error"): 1}
    assert transport.flush(5)
    assert len(server.requests) == 1  # reported once
    assert transport.stats().dropped == {("sample_rate", "transaction"): 5, ("before_send", "error"): 1}


def test_a_report_that_failed_is_sent_again(server: RecordingServer, make: Any) -> None:
    server.responder = lambda r: Reply(500)
    transport = make(server.port)
    transport.record_lost("event_processor", "error", 2)
    assert transport.flush(5)
    server.responder = lambda r: Reply()
    transport.record_lost("event_processor", "error", 1)
    assert transport.flush(5)
    first, second = server.wait_for(2)
    assert report_of(first) == {("event_processor", "error"): 2}
    assert report_of(second) == {("event_processor", "error"): 3}


class FlakySender:
    """The Sender seam with a fault in front of a real client: the first send raises something odd."""

    def __init__(self, url: str) -> None:
        self.client = HttpClient(url)
        self.calls: list[tuple[bytes, dict[str, str]]] = []

    def send(self, body: bytes, headers: Mapping[str, str]) -> Response:
        self.calls.append((body, dict(headers)))
        if len(self.calls) == 1:
            raise RuntimeError("not an OSError")
        return self.client.send(body, headers)

    def close(self) -> None:
        self.client.close()


def test_an_injected_sender_is_used_and_its_failures_are_network_errors(server: RecordingServer, make: Any) -> None:
    sender = FlakySender(server.url + dsn(server.port).envelope_path)
    transport = make(server.port, sender=sender, client="my-app/2.0")
    transport.submit("error", build(error_event()))
    transport.submit("error", build(error_event()))
    assert transport.flush(5)
    body, headers = sender.calls[0]
    assert body[:2] == b"\x1f\x8b"
    assert headers["X-Sentry-Auth"].endswith("sentry_client=my-app/2.0")
    assert headers["Content-Encoding"] == "gzip"
    assert judged(server.requests[0])[0][0] == "event"
    assert report_of(server.requests[-1]) == {("network_error", "error"): 1}
    assert transport.stats().failed == {"network_error": 1}


def test_flush_with_nothing_to_do_starts_no_thread(make: Any) -> None:
    transport = make(unused_port())
    assert transport.flush(0) is True
    assert transport._worker is None


def test_a_forked_child_sends_through_its_own_worker_and_connection(server: RecordingServer, make: Any) -> None:
    transport = make(server.port)
    parent_event, child_event, later_event = error_event(), error_event(), error_event()
    transport.submit("error", build(parent_event))
    assert transport.flush(5)
    pid = os.fork()
    if pid == 0:  # the child: submit, flush, report by exit code
        code = 3
        try:
            ok = transport.submit("error", build(child_event)) and transport.flush(5)
            code = 0 if ok and transport.stats().sent == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    transport.submit("error", build(later_event))  # the parent's worker and connection still work
    assert transport.flush(5)
    requests = server.wait_for(3)
    assert [judged(r)[0][1]["event_id"] for r in requests] == [
        parent_event["event_id"],
        child_event["event_id"],
        later_event["event_id"],
    ]
    assert server.connections == 2  # the parent's, kept through the fork, and the child's own


def test_a_burst_is_pipelined_and_a_limit_learned_mid_window_spares_what_was_not_yet_written(
    server: RecordingServer, make: Any
) -> None:
    gate = threading.Event()
    count = 0

    def responder(request: Request) -> Reply:
        nonlocal count
        gate.wait(5)  # the first answer waits until all 100 are queued: windows of 1, 2, then the rest follow
        count += 1
        return Reply(headers={"X-Sentry-Rate-Limits": "60:transaction:organization"}) if count == 3 else Reply()

    server.responder = responder
    transport = make(server.port)
    events = [transaction_event() for _ in range(100)]
    assert all(transport.submit("transaction", build(event)) for event in events)
    gate.set()
    assert transport.flush(5)
    requests = server.wait_for(4)
    assert server.connections == 1
    # Windows of 1 and 2: the 3rd answer (in the window of 2) brought the limit; that window's other
    # envelope was already written. The 97 not yet written were dropped before conversion.
    sent = [payload["event_id"] for request in requests[:3] for kind, payload in judged(request)]
    assert sent == [event["event_id"] for event in events[:3]]
    assert report_of(requests[3]) == {("ratelimit_backoff", "transaction"): 97}
    assert len(server.requests) == 4
    assert transport.stats().sent == 4


@pytest.mark.bugsink
def test_a_pipelined_burst_reaches_bugsink_whose_gunicorn_closes_after_every_answer(bugsink: Any) -> None:
    """gunicorn's sync worker answers one request per connection (``Connection: close``): a window written
    at once gets one answer per connection, the rest go again one by one, each stored once."""
    dsn_text, project_id = bugsink.new_project("pipelined")
    transport = Transport(Dsn.parse(dsn_text))
    client: Any = transport._sender
    client._depth = 8  # as if a kept-alive server had come before
    windows: list[int] = []
    send_many = client.send_many
    client.send_many = lambda requests: windows.append(len(requests)) or send_many(requests)
    running, gate = threading.Event(), threading.Event()
    try:
        # A first task holds the worker until all eight are queued behind it.
        assert transport.submit("error", lambda: running.set() or gate.wait(5) and None)
        assert running.wait(5)
        events = [error_event() for _ in range(8)]
        for event in events:
            assert transport.submit("error", build(event))
        gate.set()
        assert transport.flush(10)
        stored = bugsink.wait_for_events(8, project_id=project_id)
    finally:
        transport.shutdown(1)
    assert sorted(e["event_id"].replace("-", "") for e in stored) == sorted(e["event_id"] for e in events)
    stats = transport.stats()
    assert (stats.sent, stats.failed, stats.dropped) == (8, {}, {})
    assert windows == [8] and client.connections == 8 and client.pipeline_depth == 1


def test_envelopes_linger_for_company_until_a_batch_fills_or_a_flush_asks(server: RecordingServer, make: Any) -> None:
    transport = make(server.port, linger=30.0, batch=4)
    for _ in range(3):
        assert transport.submit("error", build(error_event()))
    with pytest.raises(AssertionError):
        server.wait_for(1, timeout=0.3)  # lingering: nothing sent yet
    assert transport.submit("error", build(error_event()))  # the 4th fills the batch: sent now, no flush
    assert len(server.wait_for(4, timeout=5)) == 4
    transport.submit("transaction", build(transaction_event()))
    started = time.monotonic()
    assert transport.flush(5)  # a flush never waits for the linger
    assert time.monotonic() - started < 2
    assert len(server.requests) == 5 and server.connections == 1


def test_bodies_below_the_threshold_go_uncompressed_and_larger_ones_gzipped(server: RecordingServer, make: Any) -> None:
    transport = make(server.port, compress_from=2048)
    small, large = error_event(), error_event()
    large["extra"] = {"blob": "x" * 4000}
    transport.submit("error", build(small))
    transport.submit("error", build(large))
    assert transport.flush(5)
    first, second = server.wait_for(2)
    assert "content-encoding" not in first.headers and first.body[:1] == b"{"
    assert second.headers["content-encoding"] == "gzip" and second.body[:2] == b"\x1f\x8b"
    assert [judged(r)[0][1]["event_id"] for r in (first, second)] == [small["event_id"], large["event_id"]]


def test_a_full_queue_loses_transactions_before_errors_up_to_half_of_it(make: Any) -> None:
    with RecordingServer(lambda r: Reply(hang=True)) as server:
        transport = make(server.port, queue_size=4, timeout=5, linger=0.0)
        assert transport.submit("transaction", build(transaction_event()))
        server.wait_for(1)  # the worker is stuck on this one; the queue holds the next four
        assert all(transport.submit("transaction", build(transaction_event())) for _ in range(4))
        assert transport.submit("transaction", build(transaction_event())) is False  # full: the newest goes
        # Errors take the place of the oldest transactions, until they fill half the queue.
        assert [transport.submit("error", build(error_event())) for _ in range(3)] == [True, True, False]
        dropped = transport.stats().dropped
        assert dropped == {("queue_overflow", "transaction"): 3, ("queue_overflow", "error"): 1}
        assert transport.stats().queued == 4
        transport.shutdown(0.2)
    dropped = transport.stats().dropped
    assert (dropped[("shutdown", "error")], dropped[("shutdown", "transaction")]) == (2, 2)


def _counted_by_thread(threads: list[threading.Thread], event: dict[str, Any]) -> Callable[[], Envelope]:
    """A builder of ``event`` that notes, in ``threads``, the thread that built it."""

    def made() -> Envelope:
        threads.append(threading.current_thread())
        return Envelope.for_event(event)

    return made


def test_once_the_worker_is_behind_the_caller_builds_and_never_what_would_be_refused(make: Any) -> None:
    threads: list[threading.Thread] = []
    counted = functools.partial(_counted_by_thread, threads)

    with RecordingServer(lambda r: Reply(hang=True)) as server:
        # queue of 4: the caller builds once a quarter of it (1) waits
        transport = make(server.port, queue_size=4, timeout=5, linger=0.0, build_in_caller=("transaction", "error"))
        assert transport.submit("transaction", counted(transaction_event()))
        server.wait_for(1)  # the worker built this one and is stuck sending it
        assert threads[0] is not threading.main_thread()
        assert transport.submit("transaction", counted(transaction_event()))  # queued as a builder
        assert transport.submit("transaction", counted(transaction_event()))  # the worker is behind: built here
        assert transport.submit("error", counted(error_event()))
        assert transport.submit("transaction", counted(transaction_event()))
        assert threads[1:] == [threading.main_thread()] * 3
        assert transport.submit("transaction", counted(transaction_event())) is False  # full: never built
        assert len(threads) == 4
        assert transport.stats().dropped == {("queue_overflow", "transaction"): 1}
        transport.shutdown(0.2)
    dropped = transport.stats().dropped
    assert (dropped[("shutdown", "error")], dropped[("shutdown", "transaction")]) == (1, 3)


def test_a_builder_failing_in_the_caller_is_counted_and_does_not_raise(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def failing() -> Envelope:
        raise RuntimeError("converter bug")

    with RecordingServer(lambda r: Reply(hang=True)) as server:
        transport = make(server.port, queue_size=4, timeout=5, linger=0.0, build_in_caller=("transaction",))
        assert transport.submit("transaction", build(transaction_event()))
        server.wait_for(1)  # the worker is stuck on this one
        assert transport.submit("transaction", build(transaction_event()))  # one waits: the worker is behind
        with caplog.at_level(logging.WARNING, "bridge.sentry.transport"):
            assert transport.submit("transaction", failing) is False  # built here, and it failed here
        assert "converter bug" in caplog.text
        assert transport.stats().dropped == {("internal_sdk_error", "transaction"): 1}
        assert transport.stats().queued == 1
        transport.shutdown(0.2)


def test_build_now_categories_are_built_by_the_caller_even_while_the_worker_keeps_up(make: Any) -> None:
    threads: list[threading.Thread] = []
    counted = functools.partial(_counted_by_thread, threads)

    with RecordingServer() as server:
        transport = make(server.port, queue_size=100, linger=0.0, build_in_caller=("transaction", "error"),
                         build_now=("error",))  # fmt: skip
        assert transport.submit("error", counted(error_event()))
        assert threads == [threading.main_thread()]  # built before submit returned: the queue holds bytes
        assert transport.submit("transaction", counted(transaction_event()))
        assert transport.flush(5.0)
        assert threads[1] is not threading.main_thread()  # the worker is not behind: it builds transactions
        assert len(server.wait_for(2)) == 2
