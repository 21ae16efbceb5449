"""The transaction assembler with real SDK spans: roots, children, late and orphaned spans, bounds."""

from __future__ import annotations

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from bridge.sentry.assemble import Assembled, Assembler


class Feed(SpanProcessor):
    """Feeds each finished span to the assembler and keeps what comes out."""

    def __init__(self, assembler: Assembler) -> None:
        self.assembler = assembler
        self.out: list[Assembled] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.out.extend(self.assembler.add(span))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def tracer_for(feed: Feed) -> trace_api.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(feed)
    return provider.get_tracer("test")


def names(assembled: list[Assembled]) -> list[tuple[str, list[str]]]:
    return [(root.name, sorted(c.name for c in children)) for root, children in assembled]


def test_a_root_with_nested_children_is_one_transaction(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock))
    tracer = tracer_for(feed)
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("db"), tracer.start_as_current_span("db.inner"):
            pass
        with tracer.start_as_current_span("http"):
            pass
        assert feed.out == []  # children wait for their root
    assert names(feed.out) == [("root", ["db", "db.inner", "http"])]
    assert feed.assembler.buffered == 0


def test_remote_parent_makes_a_local_root(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock))
    tracer = tracer_for(feed)
    remote = trace_api.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace_api.TraceFlags(1))
    with tracer.start_as_current_span(
        "server", context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
    ):
        with tracer.start_as_current_span("child"):
            pass
    [(root, children)] = feed.out
    assert root.name == "server" and root.parent is not None and root.parent.is_remote
    assert [c.name for c in children] == ["child"]


def test_concurrent_roots_in_one_trace_take_only_their_own_children(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock))
    tracer = tracer_for(feed)
    remote = trace_api.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace_api.TraceFlags(1))
    parent = trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
    first = tracer.start_span("first", context=parent)
    second = tracer.start_span("second", context=parent)
    tracer.start_span("a", context=trace_api.set_span_in_context(first)).end()
    tracer.start_span("b", context=trace_api.set_span_in_context(second)).end()
    first.end()
    second.end()
    assert names(feed.out) == [("first", ["a"]), ("second", ["b"])]


def test_late_child_goes_out_at_once_as_its_own_transaction(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock))
    tracer = tracer_for(feed)
    root = tracer.start_span("root")
    late = tracer.start_span("late", context=trace_api.set_span_in_context(root))
    root.end()
    late.end()
    assert names(feed.out) == [("root", []), ("late", [])]
    assert feed.assembler.buffered == 0


def test_orphans_go_out_after_the_ttl(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock, ttl=10))
    tracer = tracer_for(feed)
    root = tracer.start_span("never-ends")
    child = tracer.start_span("child", context=trace_api.set_span_in_context(root))
    tracer.start_span("grandchild", context=trace_api.set_span_in_context(child)).end()
    child.end()
    assert feed.out == []
    clock.now = 11
    tracer.start_span("unrelated").end()  # any activity sweeps
    assert names(feed.out) == [("child", ["grandchild"]), ("unrelated", [])]
    assert feed.assembler.buffered == 0


def test_total_cap_sends_the_oldest_trace_as_orphans(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock, max_buffered=3))
    tracer = tracer_for(feed)
    roots = [tracer.start_span(f"root{i}") for i in range(2)]
    for index, root in enumerate(roots):
        for n in range(2):
            tracer.start_span(f"c{index}.{n}", context=trace_api.set_span_in_context(root)).end()
    assert names(feed.out) == [("c0.0", []), ("c0.1", [])]
    assert feed.assembler.buffered == 2


def test_per_transaction_cap_drops_and_counts(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock, max_spans=2))
    tracer = tracer_for(feed)
    with tracer.start_as_current_span("root"):
        for n in range(5):
            with tracer.start_as_current_span(f"c{n}"):
                pass
    [(root, children)] = feed.out
    assert [c.name for c in children] == ["c0", "c1"]
    assert feed.assembler.dropped_spans == 3


def test_drain_at_shutdown(clock: Clock) -> None:
    feed = Feed(Assembler(clock=clock))
    tracer = tracer_for(feed)
    root = tracer.start_span("root")
    tracer.start_span("child", context=trace_api.set_span_in_context(root)).end()
    assert names(feed.assembler.drain()) == [("child", [])]
    assert feed.assembler.buffered == 0
