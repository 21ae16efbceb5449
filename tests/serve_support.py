"""Shared helpers of the ``serve`` tests: real SDK spans, their real OTLP encodings, the receiver on loopback."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable, Optional

from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.receiver.app import ReceiverApp
from bridge.receiver.server import WsgiServer
from bridge.receiver.sink import Accepted, Overloaded

__all__ = [
    "RecordingSink",
    "finished_spans",
    "encode",
    "to_otlp_json",
    "call",
    "running",
]


def finished_spans(
    record: Callable[[trace_api.Tracer], None], resource: Optional[dict[str, Any]] = None
) -> list[ReadableSpan]:
    """The spans a real TracerProvider finishes while ``record(tracer)`` runs."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    record(provider.get_tracer("tests.serve", "1.2.3"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The OpenTelemetry SDK's own OTLP encoding of ``spans`` (what OTLPSpanExporter sends)."""
    return encode_spans(spans)


def _ids_to_hex(node: Any) -> None:
    """protobuf's JSON has base64 ids; OTLP JSON has hex: convert a MessageToDict result in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(request)
    _ids_to_hex(document)
    return document


class RecordingSink:
    """A sink that keeps what it is given (for tests of the HTTP side); it can be told to refuse."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.refuse: Optional[Overloaded] = None
        self.draining = False
        self.drop_services: set[str] = set()
        self._lock = threading.Lock()

    def accept(self, spans: Sequence[ReadableSpan]) -> Accepted:
        if self.refuse is not None:
            raise self.refuse
        accepted = Accepted()
        with self._lock:
            for span in spans:
                service = span.resource.attributes.get("service.name")
                if service in self.drop_services:
                    accepted.dropped += 1
                    accepted.problems[f"no Sentry DSN for service.name {service!r}: dropped"] += 1
                else:
                    self.spans.append(span)
        return accepted

    def health(self) -> dict[str, Any]:
        return {"status": "draining" if self.draining else "ok"}


def call(
    app: Any,
    body: bytes = b"",
    *,
    method: str = "POST",
    path: str = "/v1/traces",
    headers: Optional[dict[str, str]] = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request through the WSGI app in this thread: (status, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(response_headers)
        return None

    out = b"".join(app(environ, start_response))
    return int(seen["status"].split()[0]), seen["headers"], out


@contextmanager
def running(app: ReceiverApp, **options: Any) -> Iterator[WsgiServer]:
    """The app behind the built-in server on a loopback port, stopped afterwards."""
    server = WsgiServer(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop(5)
        thread.join(5)
