"""bridge.otlp_encode writes OTLP protobuf straight from finished spans: decoded with opentelemetry-proto it
must be the very request OpenTelemetry's own encoder builds, for every attribute kind, events, links,
status, trace state, flags, dropped counts, resources and scopes; and the bridge's OTLP leg delivers it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

import bridge
from bridge.otlp_encode import encode_spans
from tests.peers.otlp import OtlpReceiver

ATTRIBUTES = {
    "str": "GET",
    "str.empty": "",
    "str.unicode": "héllo ✓ 𝄞",
    "bool.true": True,
    "bool.false": False,
    "int.zero": 0,
    "int.small": 7,
    "int.negative": -3,
    "int.big": 2**62,
    "int.min": -(2**63),
    "float": 3.25,
    "float.zero": 0.0,
    "float.negative": -1e-9,
    "strs": ["a", "b", ""],
    "bools": [True, False],
    "ints": [1, -2, 300],
    "floats": [0.5, 2.0],
    "empty": [],
}


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def _provider(resource: Resource, keep: Keep, limits: SpanLimits | None = None) -> TracerProvider:
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(keep))
    return provider


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    keep = Keep()
    first = _provider(Resource({"service.name": "one", "deployment.environment": "test", "n": 3}, "https://s/1"), keep)
    second = _provider(Resource({"service.name": "two"}), keep, SpanLimits(max_attributes=2, max_events=1, max_links=1))
    tracer = first.get_tracer("lib.a", "1.2.3", schema_url="https://schema/a", attributes={"scope.attr": "x"})
    other = first.get_tracer("lib.b")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    with tracer.start_as_current_span(
        "root",
        context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes=ATTRIBUTES,
        links=[Link(remote, {"link.attr": 1}), Link(SpanContext(5, 6, is_remote=False))],
    ) as root:
        root.add_event("event.plain")
        root.add_event("event.attrs", {"k": "v", "n": [1, 2]}, timestamp=1_700_000_000_000_000_000)
        root.set_status(Status(StatusCode.ERROR, "broke ✓"))
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with other.start_as_current_span(f"child {kind.name}", kind=kind) as child:
                child.set_status(Status(StatusCode.OK))
        try:
            with tracer.start_as_current_span("raises"):
                raise ValueError("boom")
        except ValueError:
            pass
    crowded = second.get_tracer("lib.c").start_span(
        "over the limits", attributes={"a": 1, "b": 2, "c": 3}, links=[Link(remote), Link(remote)]
    )
    crowded.add_event("one")
    crowded.add_event("two")
    crowded.end()
    second.get_tracer("").start_span("").end()  # empty names everywhere
    yield keep.spans
    first.shutdown()
    second.shutdown()


def test_decodes_to_what_opentelemetrys_encoder_builds(spans: list[ReadableSpan]) -> None:
    assert len(spans) == 8
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    theirs = sdk_encode_spans(spans)
    assert ours != theirs  # one deliberate difference: a link's trace state, which OpenTelemetry's encoder leaves out
    linked = [link for r in ours.resource_spans for ss in r.scope_spans for s in ss.spans for link in s.links]
    assert [link.trace_state for link in linked] == ["vendor=value,other=x", "", "vendor=value,other=x"]
    for link in linked:
        link.ClearField("trace_state")
    assert ours == theirs
    assert [len(r.scope_spans) for r in ours.resource_spans] == [2, 2]
    root = next(s for r in ours.resource_spans for ss in r.scope_spans for s in ss.spans if s.name == "root")
    assert {kv.key for kv in root.attributes} == set(ATTRIBUTES)
    assert root.status.message == "broke ✓" and root.trace_state == "vendor=value,other=x"
    assert root.flags == 0x300 and len(root.links) == 2 and len(root.events) == 2
    raised = next(s for r in ours.resource_spans for ss in r.scope_spans for s in ss.spans if s.name == "raises")
    assert [event.name for event in raised.events] == ["exception"]


def test_the_same_bytes_as_opentelemetrys_serializer(spans: list[ReadableSpan]) -> None:
    """Field order as protobuf writes it: a collector cannot tell the two encoders apart (links aside)."""
    unlinked = [span for span in spans if not span.links]
    assert len(unlinked) == 6
    for span in unlinked:
        assert encode_spans([span]) == sdk_encode_spans([span]).SerializePartialToString(), span.name
    # and again, now from the caches of encoded attributes, resources and scopes
    assert encode_spans(unlinked) == sdk_encode_spans(unlinked).SerializePartialToString()


def test_an_attribute_it_cannot_encode_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    keep = Keep()
    provider = _provider(Resource({}), keep)
    span = provider.get_tracer("t").start_span("s", attributes={"ok": 1})
    span.end()
    finished = keep.spans[0]
    finished._attributes = {"ok": 1, "huge": 2**64, "weird": [object()]}  # past what the SDK itself allows
    with caplog.at_level(logging.ERROR, logger="bridge.otlp_encode"):
        decoded = ExportTraceServiceRequest.FromString(encode_spans([finished]))
    kept = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
    assert [kv.key for kv in kept] == ["ok"]
    assert "huge" in caplog.text and "weird" in caplog.text


def test_the_otlp_leg_delivers_what_it_encodes(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, service_name="encoded")
    tracer = trace_api.get_tracer("encode-test")
    with tracer.start_as_current_span("outer", attributes={"flag": True, "values": [1.5, 2.5]}):
        with tracer.start_as_current_span("inner") as inner:
            inner.add_event("note", {"n": 1})
    assert bridge.flush(10)
    received = otlp_receiver.wait_for_spans(2)
    by_name = {span.name: span for span in received}
    assert set(by_name) == {"outer", "inner"}
    assert by_name["inner"].parent_span_id == by_name["outer"].span_id
    assert by_name["outer"].attributes["flag"] is True and by_name["outer"].attributes["values"] == [1.5, 2.5]
    assert by_name["inner"].events == [("note", {"n": 1})]
    assert by_name["outer"].resource["service.name"] == "encoded"


def test_equal_resources_and_scopes_of_distinct_objects_are_one_group_as_in_opentelemetrys_encoder() -> None:
    keep = Keep()
    providers = [_provider(Resource({"service.name": "same"}), keep) for _ in range(2)]
    for number, provider in enumerate(providers):
        for tracer in (provider.get_tracer("lib", "1"), provider.get_tracer("lib", "1"), provider.get_tracer("other")):
            tracer.start_span(f"span {number}").end()
    assert len({id(span.resource) for span in keep.spans}) == 2
    ours = ExportTraceServiceRequest.FromString(encode_spans(keep.spans))
    assert ours == sdk_encode_spans(keep.spans)
    assert [len(r.scope_spans) for r in ours.resource_spans] == [2]
    assert [len(ss.spans) for ss in ours.resource_spans[0].scope_spans] == [4, 2]
