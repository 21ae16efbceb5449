"""Decoding OTLP (protobuf from the SDK's own encoder, OTLP JSON with hex ids) into real SDK ReadableSpans."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from bridge.receiver.decode import DecodeError, ReceivedSpan, decode_protobuf
from bridge.receiver.otlpjson import decode_json
from tests.serve_support import encode, finished_spans, to_otlp_json

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
ROOT_HEX = "eee19b7ec3c1b174"
CHILD_HEX = "eee19b7ec3c1b173"


def record_request(tracer: trace_api.Tracer) -> None:
    with tracer.start_as_current_span(
        "GET /orders/{id}",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/orders/{id}", "http.response.status_code": 500},
    ) as root:
        with tracer.start_as_current_span(
            "SELECT orders", kind=SpanKind.CLIENT, attributes={"db.system.name": "postgresql", "db.rows": 3}
        ) as db:
            db.set_attribute("db.tags", ["a", "b"])
            db.set_attribute("db.ratio", 0.5)
            db.set_attribute("db.cached", False)
        try:
            raise KeyError("order 42")
        except KeyError as exc:
            root.record_exception(exc)
        root.set_status(trace_api.Status(StatusCode.ERROR, "boom"))


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


def assert_same_span(got: ReadableSpan, want: ReadableSpan) -> None:
    assert isinstance(got, ReadableSpan)
    assert got.context is not None and want.context is not None
    assert (got.context.trace_id, got.context.span_id) == (want.context.trace_id, want.context.span_id)
    assert got.context.trace_flags.sampled
    if want.parent is None:
        assert got.parent is None
    else:
        assert got.parent is not None
        assert (got.parent.span_id, got.parent.is_remote) == (want.parent.span_id, want.parent.is_remote)
    assert got.kind == want.kind
    assert got.status.status_code == want.status.status_code
    assert got.status.description == want.status.description
    assert (got.start_time, got.end_time) == (want.start_time, want.end_time)
    assert dict(got.attributes or {}) == dict(want.attributes or {})
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in got.events] == [
        (e.name, dict(e.attributes or {}), e.timestamp) for e in want.events
    ]
    assert dict(got.resource.attributes) == dict(want.resource.attributes)
    assert got.instrumentation_scope is not None and want.instrumentation_scope is not None
    assert got.instrumentation_scope.name == want.instrumentation_scope.name
    assert got.instrumentation_scope.version == want.instrumentation_scope.version


def test_protobuf_from_the_sdk_encoder_round_trips_every_field() -> None:
    original = finished_spans(record_request, {"service.name": "shop", "telemetry.sdk.language": "python"})
    decoded = decode_protobuf(encode(original).SerializeToString())
    assert decoded.rejected == 0
    got = by_name(decoded.spans)
    for want in original:
        assert_same_span(got[want.name], want)
    root = got["GET /orders/{id}"]
    assert root.events[0].name == "exception"
    assert root.events[0].attributes["exception.type"] == "KeyError"  # type: ignore[index]
    assert "Traceback (most recent call last)" in str(root.events[0].attributes["exception.stacktrace"])  # type: ignore[index]
    assert got["SELECT orders"].attributes["db.tags"] == ("a", "b")  # type: ignore[index]
    assert all(span.weight > 1600 for span in decoded.spans)


def test_otlp_json_with_hex_ids_decodes_like_the_protobuf() -> None:
    original = finished_spans(record_request)
    request = encode(original)
    document = to_otlp_json(request)
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)  # really hex, as OTLP JSON has it
    from_json = by_name(decode_json(json.dumps(document).encode()).spans)
    from_proto = by_name(decode_protobuf(request.SerializeToString()).spans)
    assert from_json.keys() == from_proto.keys()
    for name, got in from_json.items():
        assert_same_span(got, from_proto[name])


def test_otlp_json_as_the_specification_writes_it() -> None:
    # Hand-written per the OTLP/HTTP spec: camelCase keys, hex ids, enums as integers, int64 as strings.
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "manual", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": TRACE_HEX.upper(),
                                "spanId": CHILD_HEX,
                                "parentSpanId": ROOT_HEX,
                                "name": "charge",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "retries", "value": {"intValue": "3"}},
                                    {"key": "amount", "value": {"doubleValue": 9.5}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {"key": "raw", "value": {"bytesValue": "AAEC"}},
                                ],
                                "status": {"code": 2, "message": "card declined"},
                                "unknownFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    decoded = decode_json(json.dumps(document).encode())
    assert decoded.rejected == 0
    (span,) = decoded.spans
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_HEX
    assert f"{span.context.span_id:016x}" == CHILD_HEX
    assert f"{span.parent.span_id:016x}" == ROOT_HEX and not span.parent.is_remote
    assert span.kind == SpanKind.CLIENT
    assert (span.start_time, span.end_time) == (1544712660000000000, 1544712661000000000)
    assert dict(span.attributes or {}) == {"retries": 3, "amount": 9.5, "ok": True, "raw": "AAEC"}
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "card declined"
    assert span.resource.attributes["service.name"] == "checkout"
    assert span.instrumentation_scope is not None and span.instrumentation_scope.version == "0.1"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"text"', b'{"resourceSpans": 7}', b'{"resourceSpans": [{"scopeSpans": [3]}]}'],
)
def test_json_that_is_no_otlp_request_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_json(body)


def test_json_ids_that_are_not_hex_reject_only_their_span() -> None:
    good = {"traceId": TRACE_HEX, "spanId": ROOT_HEX, "name": "ok", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    base64_ids = dict(good, name="b64", traceId="W47/95gDgQPSabYzgT/GDA==")
    odd = dict(good, name="odd", spanId="abc")
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [good, base64_ids, odd]}]}]}
    decoded = decode_json(json.dumps(document).encode())
    assert [span.name for span in decoded.spans] == ["ok"]
    assert decoded.rejected == 2
    assert "invalid traceId: OTLP JSON ids are hex strings" in decoded.message()
    assert "invalid spanId" in decoded.message()


def _proto_span(request: ExportTraceServiceRequest, **fields: object) -> None:
    span = request.resource_spans[0].scope_spans[0].spans.add()
    span.trace_id = bytes.fromhex(TRACE_HEX)
    span.span_id = bytes.fromhex(CHILD_HEX)
    span.start_time_unix_nano, span.end_time_unix_nano = 10, 20
    for name, value in fields.items():
        setattr(span, name, value)


def _request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add()
    return request


def test_bad_spans_are_rejected_and_counted_while_the_others_pass() -> None:
    request = _request()
    _proto_span(request, name="good", parent_span_id=bytes.fromhex(ROOT_HEX))
    _proto_span(request, name="short trace id", trace_id=b"\x01" * 8)
    _proto_span(request, name="zero trace id", trace_id=bytes(16))
    _proto_span(request, name="zero span id", span_id=bytes(8))
    _proto_span(request, name="bad parent", parent_span_id=b"\x01\x02")
    _proto_span(request, name="no end", end_time_unix_nano=0)
    decoded = decode_protobuf(request.SerializeToString())
    assert [span.name for span in decoded.spans] == ["good"]
    assert decoded.rejected == 5
    message = decoded.message()
    assert "invalid trace_id: must be 16 bytes, not all zero (2 spans)" in message
    assert "invalid span_id" in message and "invalid parent_span_id" in message and "required" in message


def test_an_all_zero_parent_id_means_no_parent() -> None:
    request = _request()
    _proto_span(request, parent_span_id=bytes(8))
    (span,) = decode_protobuf(request.SerializeToString()).spans
    assert span.parent is None


@pytest.mark.parametrize(
    ("kind", "flags", "remote"),
    [
        (2, 0, True),  # SERVER without flags: starts a local segment
        (5, 0, True),  # CONSUMER too
        (1, 0, False),  # INTERNAL: local parent
        (3, 0, False),  # CLIENT: local parent
        (2, 0x100, False),  # flags say: known, and not remote
        (1, 0x300, True),  # flags say: remote
    ],
)
def test_parent_is_remote_from_flags_else_from_the_kind(kind: int, flags: int, remote: bool) -> None:
    request = _request()
    _proto_span(request, kind=kind, flags=flags, parent_span_id=bytes.fromhex(ROOT_HEX))
    (span,) = decode_protobuf(request.SerializeToString()).spans
    assert span.parent is not None and span.parent.is_remote is remote


def test_the_sdk_encoder_flags_decide_is_remote() -> None:
    remote_parent = trace_api.SpanContext(
        int(TRACE_HEX, 16), int(ROOT_HEX, 16), is_remote=True, trace_flags=trace_api.TraceFlags(1)
    )

    def record(tracer: trace_api.Tracer) -> None:
        context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote_parent))
        with tracer.start_as_current_span("internal but remote parent", context=context):
            with tracer.start_as_current_span("server with local parent", kind=SpanKind.SERVER):
                pass

    spans = by_name(decode_protobuf(encode(finished_spans(record)).SerializeToString()).spans)
    assert spans["internal but remote parent"].parent.is_remote is True  # type: ignore[union-attr]
    assert spans["server with local parent"].parent.is_remote is False  # type: ignore[union-attr]


def test_any_values_of_every_kind() -> None:
    request = _request()
    _proto_span(request)
    span = request.resource_spans[0].scope_spans[0].spans[0]

    def add(key: str, value: AnyValue) -> None:
        span.attributes.append(KeyValue(key=key, value=value))

    add("s", AnyValue(string_value="x"))
    add("b", AnyValue(bool_value=True))
    add("i", AnyValue(int_value=-(2**63)))
    add("d", AnyValue(double_value=1.5))
    add("nan", AnyValue(double_value=math.nan))
    add("inf", AnyValue(double_value=-math.inf))
    add("bytes", AnyValue(bytes_value=b"\x00\x01\x02"))
    array = AnyValue()
    array.array_value.values.add(int_value=1)
    array.array_value.values.add(string_value="two")
    array.array_value.values.add()  # empty: kept as None inside an array
    add("array", array)
    kvlist = AnyValue()
    inner = kvlist.kvlist_value.values.add(key="nested")
    inner.value.kvlist_value.values.add(key="deep", value=AnyValue(bool_value=False))
    add("kvlist", kvlist)
    add("empty", AnyValue())
    add("", AnyValue(string_value="no key"))
    (decoded,) = decode_protobuf(request.SerializeToString()).spans
    assert dict(decoded.attributes or {}) == {
        "s": "x",
        "b": True,
        "i": -(2**63),
        "d": 1.5,
        "nan": "NaN",
        "inf": "-Infinity",
        "bytes": "AAEC",
        "array": (1, "two", None),
        "kvlist": {"nested": {"deep": False}},
    }


def test_equal_resources_of_separate_requests_are_one_object() -> None:
    spans = finished_spans(record_request)
    body = encode(spans).SerializeToString()
    first, second = decode_protobuf(body).spans, decode_protobuf(body).spans
    assert first[0].resource is second[0].resource
    assert first[0].instrumentation_scope is second[0].instrumentation_scope


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a" + b"\x80" * 11])
def test_protobuf_that_does_not_parse_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_protobuf(body)


@pytest.mark.parametrize("text_size", [0, 3000])
def test_the_weight_estimate_covers_the_memory_a_decoded_span_takes(text_size: int) -> None:
    import gc
    import tracemalloc

    def record(tracer: trace_api.Tracer) -> None:
        with tracer.start_as_current_span("root"):
            for index in range(500):
                with tracer.start_as_current_span("child", attributes={"db.query.text": "q" * text_size + str(index)}):
                    pass

    body = encode([s for s in finished_spans(record) if s.parent is not None]).SerializeToString()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        spans = decode_protobuf(body).spans
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimated = sum(span.weight for span in spans)
    assert used <= estimated <= 2 * used + 500 * 1600, (used, estimated)
