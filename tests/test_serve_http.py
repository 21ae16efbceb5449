"""The receiver's HTTP side: status codes as OTLP/HTTP specifies, over real HTTP on loopback and in-process.

Spans go to a recording sink here; the Sentry side has its own tests (test_serve_e2e.py).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import zlib
from collections.abc import Iterator

import pytest
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from bridge.receiver.app import ReceiverApp
from bridge.receiver.server import WsgiServer
from bridge.receiver.sink import Overloaded
from tests.serve_support import RecordingSink, call, encode, finished_spans, running, to_otlp_json

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def record_two(tracer: trace_api.Tracer) -> None:
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("child"):
            pass


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def server(sink: RecordingSink) -> Iterator[WsgiServer]:
    with running(ReceiverApp(sink, max_body=64 * 1024)) as server:
        yield server


def post(
    server: WsgiServer, body: bytes, headers: dict[str, str], path: str = "/v1/traces"
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def status_of(body: bytes, content_type: str = "application/x-protobuf") -> status_pb2.Status:
    message = status_pb2.Status()
    if content_type == "application/json":
        parsed = json.loads(body)
        message.code, message.message = parsed.get("code", 0), parsed.get("message", "")
    else:
        message.ParseFromString(body)
    return message


def proto_body() -> bytes:
    return encode(finished_spans(record_two)).SerializeToString()


def test_protobuf_is_accepted_with_an_empty_protobuf_response(server: WsgiServer, sink: RecordingSink) -> None:
    status, headers, body = post(server, proto_body(), PROTO)
    assert status == 200
    assert headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse()
    response.ParseFromString(body)
    assert not response.HasField("partial_success")
    assert sorted(span.name for span in sink.spans) == ["GET /", "child"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "identity"])
def test_compressed_bodies_are_accepted(server: WsgiServer, sink: RecordingSink, encoding: str) -> None:
    body = proto_body()
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "raw-deflate":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
    header = "deflate" if encoding == "raw-deflate" else encoding
    status, _, _ = post(server, body, {**PROTO, "Content-Encoding": header})
    assert status == 200
    assert len(sink.spans) == 2


def test_json_gets_a_json_response_with_partial_success(server: WsgiServer, sink: RecordingSink) -> None:
    document = to_otlp_json(encode(finished_spans(record_two)))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[0], spanId="0000000000000000"))
    status, headers, body = post(
        server, gzip.compress(json.dumps(document).encode()), {**JSON, "Content-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["partialSuccess"]["rejectedSpans"] in ("1", 1)
    assert "invalid span_id" in answer["partialSuccess"]["errorMessage"]
    assert len(sink.spans) == 2


def test_spans_of_services_without_a_dsn_are_reported_rejected(server: WsgiServer, sink: RecordingSink) -> None:
    sink.drop_services.add("shop")
    status, _, body = post(server, proto_body(), PROTO)
    assert status == 200
    response = ExportTraceServiceResponse()
    response.ParseFromString(body)
    assert response.partial_success.rejected_spans == 2
    assert "no Sentry DSN for service.name 'shop'" in response.partial_success.error_message


@pytest.mark.parametrize(
    ("body", "headers", "code", "grpc_code"),
    [
        (b"\xff\xfe garbage", PROTO, 400, 3),
        (b"{not json", JSON, 400, 3),
        (b"[]", JSON, 400, 3),
        (gzip.compress(b"x" * 100)[:-8], {**PROTO, "Content-Encoding": "gzip"}, 400, 3),  # truncated gzip
        (b"not gzip at all", {**PROTO, "Content-Encoding": "gzip"}, 400, 3),
        (gzip.compress(b"") + b"trailing junk", {**PROTO, "Content-Encoding": "gzip"}, 400, 3),
        (b"hello", {"Content-Type": "text/plain"}, 415, 3),
        (b"hello", {}, 415, 3),
        (b"", {**PROTO, "Content-Encoding": "br"}, 415, 3),
        (b"x" * (64 * 1024 + 1), PROTO, 413, 8),
        (gzip.compress(bytes(10 * 1024 * 1024)), {**PROTO, "Content-Encoding": "gzip"}, 413, 8),  # a gzip bomb
    ],
    ids=[
        "garbage",
        "bad-json",
        "json-array",
        "truncated-gzip",
        "not-gzip",
        "gzip-trailing",
        "text-plain",
        "no-type",
        "brotli",
        "too-large",
        "gzip-bomb",
    ],
)
def test_bad_requests_get_their_status_and_a_status_body(
    server: WsgiServer, sink: RecordingSink, body: bytes, headers: dict[str, str], code: int, grpc_code: int
) -> None:
    status, response_headers, response_body = post(server, body, headers)
    assert status == code
    content_type = headers.get("Content-Type", "application/x-protobuf")
    content_type = (
        content_type if content_type in ("application/json", "application/x-protobuf") else "application/x-protobuf"
    )
    assert response_headers["content-type"] == content_type
    message = status_of(response_body, content_type)
    assert message.code == grpc_code and message.message
    assert sink.spans == []
    # the server is still fine afterwards
    assert post(server, proto_body(), PROTO)[0] == 200


def test_a_full_queue_is_429_and_shutting_down_is_503_with_retry_after(server: WsgiServer, sink: RecordingSink) -> None:
    sink.refuse = Overloaded(429, 2, "the queue to Sentry is full; retry later")
    status, headers, body = post(server, proto_body(), PROTO)
    assert (status, headers["retry-after"]) == (429, "2")
    assert status_of(body).code == 8
    sink.refuse, sink.draining = None, True
    status, headers, _ = post(server, proto_body(), PROTO)
    assert (status, headers["retry-after"]) == (503, "1")
    assert sink.spans == []


def test_other_paths_and_methods(server: WsgiServer) -> None:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    for method, path, code in [("GET", "/v1/traces", 405), ("POST", "/v1/metrics", 404), ("GET", "/health", 200)]:
        connection.request(method, path)  # the same kept-alive connection throughout
        response = connection.getresponse()
        body = response.read()
        assert response.status == code, (method, path)
        if code == 405:
            assert response.getheader("Allow") == "POST"
        if code == 200:
            health = json.loads(body)
            assert health["status"] == "ok" and health["responses"] == {"404": 1, "405": 1}
    connection.close()


def test_a_chunked_body_is_read(server: WsgiServer, sink: RecordingSink) -> None:
    host, port = server.server_address[:2]
    body = gzip.compress(proto_body())
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    connection.request(
        "POST", "/v1/traces", body=iter(pieces), headers={**PROTO, "Content-Encoding": "gzip"}, encode_chunked=True
    )
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert len(sink.spans) == 2
    connection.close()


def test_a_chunked_body_over_the_limit_is_413(server: WsgiServer) -> None:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    pieces = [b"x" * 8192] * 9  # 72 KiB > 64 KiB, without a Content-Length
    connection.request("POST", "/v1/traces", body=iter(pieces), headers=PROTO, encode_chunked=True)
    response = connection.getresponse()
    response.read()
    assert response.status == 413
    connection.close()


def test_broken_chunked_framing_is_400_and_the_server_lives_on(server: WsgiServer) -> None:
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        )
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert post(server, proto_body(), PROTO)[0] == 200


def test_the_real_otlp_exporter_with_gzip_exports_successfully(server: WsgiServer, sink: RecordingSink) -> None:
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", compression=Compression.Gzip, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "exporter-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("inner"):
            pass
    provider.shutdown()
    assert sorted(span.name for span in sink.spans) == ["inner", "root"]
    assert {span.resource.attributes["service.name"] for span in sink.spans} == {"exporter-test"}


def test_the_real_exporter_treats_partial_success_as_success(server: WsgiServer, sink: RecordingSink) -> None:
    sink.drop_services.add("nobody")
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=10)
    spans = finished_spans(record_two, {"service.name": "nobody"})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert sink.spans == []
    exporter.shutdown()


CONTENT_TYPES = st.sampled_from(["application/x-protobuf", "application/json", "application/json; charset=utf-8"])
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "identity"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), content_type=CONTENT_TYPES, encoding=ENCODINGS, compress=st.booleans())
def test_random_bodies_never_crash_the_app(body: bytes, content_type: str, encoding: str, compress: bool) -> None:
    app = ReceiverApp(RecordingSink(), max_body=4096)
    if compress and encoding == "gzip":
        body = gzip.compress(body)
    elif compress and encoding == "deflate":
        body = zlib.compress(body)
    headers = {"Content-Type": content_type, "Content-Encoding": encoding}
    status, response_headers, response_body = call(app, body, headers=headers)
    assert status in (200, 400, 413), status
    expected_type = "application/json" if content_type.startswith("application/json") else "application/x-protobuf"
    assert response_headers["Content-Type"] == expected_type
    if status != 200:
        assert status_of(response_body, expected_type).message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
OTLP_KEYS = st.sampled_from(
    [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "traceId",
        "spanId",
        "parentSpanId",
        "attributes",
        "events",
        "links",
        "status",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "name",
        "value",
        "key",
        "intValue",
        "arrayValue",
    ]
)
OTLP_SHAPED = st.recursive(
    JSON_VALUES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(OTLP_KEYS, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None)
@given(document=st.dictionaries(OTLP_KEYS, OTLP_SHAPED, max_size=3))
def test_random_otlp_shaped_json_never_crashes_the_app(document: dict[str, object]) -> None:
    app = ReceiverApp(RecordingSink())
    status, _, body = call(app, json.dumps(document).encode(), headers=JSON)
    assert status in (200, 400), (status, body)
    if status == 200:
        json.loads(body)


def test_the_server_stops_with_a_kept_alive_idle_connection_open(sink: RecordingSink) -> None:
    app = ReceiverApp(sink)
    server = WsgiServer(app, "127.0.0.1", 0)
    import threading

    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    connection.request("GET", "/health")
    connection.getresponse().read()  # the connection stays open, idle
    assert server.stop(5) is True  # idle connections are closed at once, not after the idle timeout
    thread.join(5)
    assert not thread.is_alive()
    connection.close()


VALID_JSON = to_otlp_json(encode(finished_spans(record_two)))
VALID_PROTO = encode(finished_spans(record_two)).SerializeToString()


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_valid_json_request_with_one_value_replaced_never_crashes_the_app(data: st.DataObject) -> None:
    document = json.loads(json.dumps(VALID_JSON))
    path = data.draw(st.sampled_from(_paths(document)[1:]))
    holder = document
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = data.draw(JSON_VALUES)
    sink = RecordingSink()
    status, _, body = call(ReceiverApp(sink), json.dumps(document).encode(), headers=JSON)
    assert status in (200, 400), (status, body)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_valid_protobuf_request_with_bytes_changed_never_crashes_the_app(data: st.DataObject) -> None:
    body = bytearray(VALID_PROTO)
    for _ in range(data.draw(st.integers(1, 8))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    status, _, response = call(ReceiverApp(RecordingSink()), bytes(body), headers=PROTO)
    assert status in (200, 400), (status, response)
