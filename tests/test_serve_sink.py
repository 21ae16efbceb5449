"""Routing by service.name, order within and across requests, back-pressure, time-to-live, and the bounds.

The destinations here hold the real Assembler (the Sentry leg's buffer); the leg itself is in test_serve_e2e.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from bridge.errors import ConfigError
from bridge.receiver.decode import ReceivedSpan, decode_protobuf
from bridge.receiver.routes import Routes, parse_routes
from bridge.receiver.sink import Overloaded, SentrySink
from bridge.sentry.assemble import Assembled, Assembler
from bridge.sentry.dsn import Dsn
from tests.serve_support import encode, finished_spans

DSN_A = "http://keya@127.0.0.1:9/1"
DSN_B = "http://keyb@127.0.0.1:9/2"


class AssemblerDestination:
    """A Sentry leg's buffer without the Sentry side: what it would send lands in ``out``."""

    def __init__(self, dsn: Dsn, spans: int, size: Optional[int], ttl: float = 60.0) -> None:
        self.dsn, self.max_spans, self.max_bytes = dsn, spans, size
        self.assembler = Assembler(ttl=ttl, max_buffered=spans, max_buffered_bytes=size, weigh=lambda s: s.weight)  # type: ignore[attr-defined]
        self.out: list[Assembled] = []
        self.full = False
        self.shut_down_with: Optional[float] = None
        self.expired = threading.Event()
        self._lock = threading.Lock()

    @property
    def buffered(self) -> int:
        return self.assembler.buffered

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.out.extend(self.assembler.add(span))

    def expire(self) -> None:
        with self._lock:
            ready = self.assembler.sweep()
            self.out.extend(ready)
        if ready:
            self.expired.set()

    def saturated(self) -> bool:
        return self.full

    def shutdown(self, timeout: float) -> None:
        self.shut_down_with = timeout
        with self._lock:
            self.out.extend(self.assembler.drain())


class Destinations:
    def __init__(self, ttl: float = 60.0) -> None:
        self.made: dict[str, AssemblerDestination] = {}
        self.ttl = ttl

    def __call__(self, dsn: Dsn, spans: int, size: Optional[int]) -> AssemblerDestination:
        self.made[dsn.raw] = AssemblerDestination(dsn, spans, size, self.ttl)
        return self.made[dsn.raw]


def received(spans: Sequence[ReadableSpan]) -> list[ReceivedSpan]:
    """The spans as the receiver sees them: through the SDK's OTLP encoding and our decoder."""
    return decode_protobuf(encode(spans).SerializeToString()).spans


def request_spans(service: str = "shop") -> list[ReceivedSpan]:
    def record(tracer: trace_api.Tracer) -> None:
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER):
            with tracer.start_as_current_span("db"), tracer.start_as_current_span("db.inner"):
                pass

    return received(finished_spans(record, {"service.name": service}))


def transactions(destination: AssemblerDestination) -> list[tuple[str, list[str]]]:
    return [(root.name, sorted(child.name for child in children)) for root, children in destination.out]


def test_routes_file_format(tmp_path: Path) -> None:
    path = tmp_path / "routes.txt"
    path.write_text(
        f"# service.name = DSN\n\ncheckout = {DSN_A}\n  billing={DSN_B}  # trailing comment\nlegacy =\n* = {DSN_B}\n"
    )
    routes = Routes.load(str(path), DSN_A)
    assert routes.dsn_for("checkout") == Dsn.parse(DSN_A)
    assert routes.dsn_for("billing") == Dsn.parse(DSN_B)
    assert routes.dsn_for("legacy") is None
    assert routes.dsn_for("anything else") == Dsn.parse(DSN_B)  # "*" wins over SENTRY_DSN
    assert [dsn.raw for dsn in routes.dsns] == [DSN_B, DSN_A]
    assert Routes.load(None, DSN_A).dsn_for("x") == Dsn.parse(DSN_A)
    without_star = tmp_path / "two.txt"
    without_star.write_text(f"checkout = {DSN_B}\n")
    assert Routes.load(str(without_star), DSN_A).dsn_for("other") == Dsn.parse(DSN_A)
    assert Routes.load(str(without_star), None).dsn_for("other") is None


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a = http://k@h/1\na = http://k@h/2\n", "<routes>:2", "a second route"),
        ("* =\n* = http://k@h/2\n", "<routes>:2", "a second '*' route"),
        ("\n\njust a name\n", "<routes>:3", "expected a line"),
        ("= http://k@h/1\n", "<routes>:1", "expected a line"),
        ("a = not-a-dsn\n", "<routes>:1", "unknown scheme"),
        ("a = http://k@h/project\n", "<routes>:1", "project id"),
    ],
)
def test_routes_file_errors_name_the_line(text: str, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routes(text)
    assert caught.value.setting == where
    assert problem in str(caught.value)


def test_an_unreadable_routes_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the routing file"):
        Routes.load(str(tmp_path / "missing.txt"), None)


def test_spans_go_to_the_dsn_of_their_service_and_the_rest_are_counted() -> None:
    services, _, _ = parse_routes(f"checkout = {DSN_A}\nlegacy =\n")
    made = Destinations()
    sink = SentrySink(Routes(services, Dsn.parse(DSN_B)), factory=made)
    accepted = sink.accept(request_spans("checkout") + request_spans("other") + request_spans("legacy"))
    assert transactions(made.made[DSN_A]) == [("GET /cart", ["db", "db.inner"])]
    assert transactions(made.made[DSN_B]) == [("GET /cart", ["db", "db.inner"])]
    assert accepted.dropped == 3
    assert accepted.problems == {"no Sentry DSN for service.name 'legacy': dropped": 3}
    assert sink.health()["dropped_without_dsn"] == 3
    sink.shutdown(1)


def test_a_root_before_its_children_in_one_request_is_still_one_transaction() -> None:
    made = Destinations()
    sink = SentrySink(Routes({}, Dsn.parse(DSN_A)), factory=made)
    spans = request_spans()
    root_first = sorted(spans, key=lambda s: s.parent is not None)
    assert root_first[0].name == "GET /cart"
    sink.accept(root_first)
    assert transactions(made.made[DSN_A]) == [("GET /cart", ["db", "db.inner"])]
    sink.shutdown(1)


def test_a_trace_split_over_two_requests_is_one_transaction() -> None:
    made = Destinations()
    sink = SentrySink(Routes({}, Dsn.parse(DSN_A)), factory=made)
    spans = request_spans()
    children = [s for s in spans if s.parent is not None]
    (root,) = [s for s in spans if s.parent is None]
    sink.accept(children)
    assembler = made.made[DSN_A].assembler
    assert made.made[DSN_A].out == [] and sink.health()["buffered_spans"] == 2
    assert assembler.buffered_bytes == sum(child.weight for child in children)
    sink.accept([root])
    assert transactions(made.made[DSN_A]) == [("GET /cart", ["db", "db.inner"])]
    assert sink.health()["buffered_spans"] == 0 and assembler.buffered_bytes == 0
    sink.shutdown(1)


def test_a_full_queue_refuses_the_whole_request_and_takes_nothing() -> None:
    made = Destinations()
    sink = SentrySink(Routes({"checkout": Dsn.parse(DSN_A)}, Dsn.parse(DSN_B)), factory=made)
    made.made[DSN_B].full = True
    with pytest.raises(Overloaded) as caught:
        sink.accept(request_spans("checkout") + request_spans("other"))
    assert (caught.value.status, caught.value.retry_after) == (429, 2)
    assert made.made[DSN_A].out == [] and made.made[DSN_A].buffered == 0  # not even the other DSN's part
    made.made[DSN_B].full = False
    sink.accept(request_spans("checkout") + request_spans("other"))
    assert len(made.made[DSN_A].out) == len(made.made[DSN_B].out) == 1
    sink.shutdown(1)


def test_after_shutdown_requests_are_503_and_the_buffers_were_drained() -> None:
    made = Destinations()
    sink = SentrySink(Routes({}, Dsn.parse(DSN_A)), factory=made)
    sink.accept([s for s in request_spans() if s.parent is not None])  # children waiting for a root
    sink.shutdown(3)
    destination = made.made[DSN_A]
    assert destination.shut_down_with is not None and 0 < destination.shut_down_with <= 3
    assert transactions(destination) == [("db", ["db.inner"])]  # sent as an orphan, not lost
    assert sink.draining
    with pytest.raises(Overloaded) as caught:
        sink.accept(request_spans())
    assert caught.value.status == 503


def test_the_time_to_live_holds_while_no_span_arrives() -> None:
    made = Destinations(ttl=0.2)
    sink = SentrySink(Routes({}, Dsn.parse(DSN_A)), factory=made, buffer_ttl=0.2)
    sink.accept([s for s in request_spans() if s.parent is not None])
    destination = made.made[DSN_A]
    assert destination.expired.wait(5), "the ticker did not expire the orphaned children"
    assert transactions(destination) == [("db", ["db.inner"])]
    sink.shutdown(1)


def test_the_buffer_bounds_are_shared_between_dsns() -> None:
    made = Destinations()
    routes = Routes({"checkout": Dsn.parse(DSN_A)}, Dsn.parse(DSN_B))
    SentrySink(routes, factory=made, max_buffered_spans=1000, max_buffered_bytes=10_000_000).shutdown(0)
    assert {(d.max_spans, d.max_bytes) for d in made.made.values()} == {(500, 5_000_000)}


def test_the_byte_bound_sends_the_oldest_trace_out_early() -> None:
    made = Destinations()
    weight = request_spans()[0].weight
    sink = SentrySink(Routes({}, Dsn.parse(DSN_A)), factory=made, max_buffered_bytes=weight * 3)
    first = [s for s in request_spans() if s.parent is not None]  # 2 children of trace 1
    second = [s for s in request_spans() if s.parent is not None]  # 2 children of trace 2
    sink.accept(first)
    assert made.made[DSN_A].out == []
    sink.accept(second)  # 4 spans' worth > 3: trace 1 goes out as orphans
    assert transactions(made.made[DSN_A]) == [("db", ["db.inner"])]
    assert made.made[DSN_A].out[0][0].context.trace_id == first[0].context.trace_id  # type: ignore[union-attr]
    assert made.made[DSN_A].assembler.buffered == 2
    sink.shutdown(1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def split(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    (root,) = [s for s in spans if s.parent is None]
    return root, [s for s in spans if s.parent is not None]


def test_a_waiting_root_gathers_children_that_arrive_after_it() -> None:
    clock = Clock()
    assembler = Assembler(root_delay=2.0, clock=clock, weigh=lambda s: s.weight)  # type: ignore[attr-defined]
    root, children = split(request_spans())
    db = next(c for c in children if c.name == "db")
    inner = next(c for c in children if c.name == "db.inner")
    assert assembler.add(root) == []  # it waits
    assert assembler.buffered == 1 and assembler.buffered_bytes == root.weight
    clock.now += 1.0
    assert assembler.add(db) == []
    assert assembler.sweep() == []  # not due yet
    clock.now += 1.0
    [(got_root, got_children)] = assembler.sweep()
    assert got_root is root and got_children == [db]
    assert assembler.buffered == 0 and assembler.buffered_bytes == 0
    assert assembler.add(inner) == [(inner, [])]  # its transaction left already: alone, at once


def test_a_due_root_goes_out_with_the_next_span_too() -> None:
    clock = Clock()
    assembler = Assembler(root_delay=2.0, clock=clock)
    root, children = split(request_spans())
    assembler.add(root)
    clock.now += 5.0
    other_root, _ = split(request_spans())
    assert [r.name for r, _ in assembler.add(other_root)] == ["GET /cart"]  # the first root, now due


def test_waiting_roots_go_out_first_when_over_a_bound() -> None:
    assembler = Assembler(root_delay=60.0, max_buffered=2, clock=Clock())
    first_root, first_children = split(request_spans())
    second_root, _ = split(request_spans())
    assembler.add(first_root)
    assembler.add(next(c for c in first_children if c.name == "db"))
    ready = assembler.add(second_root)  # 3 waiting > 2: the oldest root goes, with what it has
    assert [(r is first_root, [c.name for c in cs]) for r, cs in ready] == [(True, ["db"])]
    assert assembler.buffered == 1


def test_shutdown_sends_waiting_roots_with_their_children() -> None:
    assembler = Assembler(root_delay=60.0, clock=Clock())
    root, children = split(request_spans())
    assembler.add(root)
    assembler.add(children[1])
    assembler.add(children[0])
    [(got_root, got_children)] = assembler.drain()
    assert got_root is root and len(got_children) == 2
    assert assembler.buffered == 0


def test_without_root_delay_a_root_goes_out_at_once() -> None:
    assembler = Assembler(clock=Clock())
    root, _ = split(request_spans())
    assert [r for r, _ in assembler.add(root)] == [root]
