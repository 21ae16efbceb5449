"""The trace's DSC state from a span's start to its finished copy, with the real SDK's span lifecycle."""

from __future__ import annotations

from typing import Any, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from bridge import tracebook
from bridge.dsc import Incoming
from bridge.propagation import SentryPropagator

TRACE = "771a43a4192642f0b136d5159a501700"
UPSTREAM = f"sentry-trace_id={TRACE},sentry-public_key=up,sentry-sample_rate=1.0,sentry-sampled=true"


class Head:
    """A DscHead stating a fixed DSC, counting how often it is asked."""

    sample_rate = 0.5

    def __init__(self) -> None:
        self.calls = 0

    def head_dsc(self, trace_id: int, sampled: bool, root: Optional[Any]) -> dict[str, str]:
        self.calls += 1
        return {"trace_id": f"{trace_id:032x}", "public_key": "ours", "transaction": getattr(root, "name", "")}


class Book(SpanProcessor):
    """What the Sentry leg's processor does with the book."""

    def __init__(self) -> None:
        self.finished: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: Optional[context_api.Context] = None) -> None:
        tracebook.remember(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        tracebook.handover(span)
        self.finished.append(span)


def tracer(book: Book) -> trace_api.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(book)
    return provider.get_tracer("test")


def test_the_incoming_dsc_reaches_the_finished_copies_of_root_and_children() -> None:
    book = Book()
    incoming = SentryPropagator().extract({"sentry-trace": f"{TRACE}-b7ad6b7169203331-1", "baggage": UPSTREAM})
    live_before = len(tracebook._book)
    with tracer(book).start_as_current_span("GET /", context=incoming, kind=trace_api.SpanKind.SERVER) as root:
        with tracer(book).start_as_current_span("child") as child:
            assert getattr(child, tracebook.STATE_ATTR) is getattr(root, tracebook.STATE_ATTR)
    assert len(tracebook._book) == live_before  # everything that ended left the book
    finished_child, finished_root = book.finished
    assert finished_root is not root  # the SDK's copy...
    for span in (finished_child, finished_root):
        dsc = tracebook.dsc_for_span(span, head=Head())
        assert dsc is not None and dsc["public_key"] == "up"  # ...still knows the upstream's DSC


def test_the_first_use_freezes_the_dsc_for_the_whole_trace() -> None:
    book, head = Book(), Head()
    with tracer(book).start_as_current_span("GET /users/42", kind=trace_api.SpanKind.SERVER) as root:
        with tracer(book).start_as_current_span("client", kind=trace_api.SpanKind.CLIENT):
            # An outgoing request: the DSC is made now, named by the local root as it is now.
            first = tracebook.dsc_for_span(trace_api.get_current_span(), head=head)
        root.update_name("GET /users/{id}")
    later = [tracebook.dsc_for_span(span, head=head) for span in book.finished]
    assert first is not None and first["transaction"] == "GET /users/42"
    assert later == [first, first] and head.calls == 1  # envelopes reuse what went downstream


def test_spans_no_processor_ends_never_enter_the_book() -> None:
    before = len(tracebook._book)
    span = trace_api.NonRecordingSpan(trace_api.SpanContext(1, 2, is_remote=False))
    context = context_api.set_value("unused", 1)
    tracebook.remember(span, context, track=False)
    assert len(tracebook._book) == before
    assert getattr(span, tracebook.STATE_ATTR).root is None


def test_without_state_the_context_and_the_span_itself_are_used() -> None:
    incoming = SentryPropagator().extract({"sentry-trace": f"{TRACE}-b7ad6b7169203331-1", "baggage": UPSTREAM})
    remote = trace_api.get_current_span(incoming)
    assert tracebook.dsc_for_span(remote, incoming, head=Head())["public_key"] == "up"  # type: ignore[index]
    span = TracerProvider().get_tracer("t").start_span("GET /solo")
    span.end()
    assert tracebook.dsc_for_span(span, head=Head())["transaction"] == "GET /solo"  # type: ignore[index]
    deferred = Incoming({"public_key": "up"}, deferred=True).dsc(5, False, 0.5)  # decided here: not sampled
    assert deferred["sampled"] == "false" and deferred["sample_rate"] == "0.5" and float(deferred["sample_rand"]) >= 0.5


def test_a_plain_root_keeps_nothing_until_its_dsc_is_needed() -> None:
    book, head = Book(), Head()
    before = len(tracebook._book)
    with tracer(book).start_as_current_span("GET /plain", kind=trace_api.SpanKind.SERVER) as plain:
        assert getattr(plain, tracebook.STATE_ATTR, None) is None and len(tracebook._book) == before
    [finished] = book.finished
    assert tracebook.dsc_for_span(finished, head=head)["transaction"] == "GET /plain"  # type: ignore[index]

    with tracer(book).start_as_current_span("GET /users/42", kind=trace_api.SpanKind.SERVER) as root:
        first = tracebook.dsc_for_span(root, head=head)  # asked while live (an outgoing request): frozen now
        assert len(tracebook._book) == before + 1
        root.update_name("GET /users/{id}")
    assert len(tracebook._book) == before
    assert first is not None and tracebook.dsc_for_span(book.finished[-1], head=head) is first
