"""Shared helpers of the ``serve`` tests: real SDK spans, their real OTLP encodings, the receiver on loopback."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from google.protobuf import json_format
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.cli import serve
from bridge.receiver.app import ReceiverApp
from bridge.receiver.routes import Routes
from bridge.receiver.server import WsgiServer
from bridge.receiver.sink import Accepted, Overloaded, SentrySink

__all__ = [
    "RecordingSink",
    "finished_spans",
    "encode",
    "to_otlp_json",
    "call",
    "running",
    "node_otel_modules",
    "node_export",
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


NODE_PACKAGES = (  # one consistent release set of OpenTelemetry JS (sdk-trace-base 2.12 pairs with 0.223)
    "@opentelemetry/api@1.9.0",
    "@opentelemetry/sdk-trace-base@2.12.1",
    "@opentelemetry/exporter-trace-otlp-proto@0.223.1",
    "@opentelemetry/exporter-trace-otlp-http@0.223.1",
)
NODE_SCRIPT = Path(__file__).parent / "data" / "serve" / "node_export.js"
_node_modules: list[Path] = []


def node_otel_modules() -> Path:
    """``node_modules`` with OpenTelemetry JS, installed once from npm into a cache; skips the test without
    node, npm or the registry."""
    if _node_modules:
        return _node_modules[0]
    import pytest

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the OpenTelemetry JS tests")
    prefix = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otel-sentry-bridge" / "node-otel"
    modules = prefix / "node_modules"
    stamp = prefix / "installed.txt"
    wanted = "\n".join(NODE_PACKAGES)
    if not stamp.exists() or stamp.read_text() != wanted:
        prefix.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--save-exact", *NODE_PACKAGES],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of OpenTelemetry JS timed out (is the npm registry reachable?)")
        if result.returncode != 0:
            pytest.skip(f"npm install of OpenTelemetry JS failed (registry unreachable?): {result.stderr[-300:]}")
        stamp.write_text(wanted)
    _node_modules.append(modules)
    return modules


def node_export(url: str, fmt: str, service: str) -> dict[str, Any]:
    """Run the OpenTelemetry JS exporter script against ``url``; its printed summary."""
    result = subprocess.run(
        ["node", str(NODE_SCRIPT), url, fmt, service],
        env={**os.environ, "NODE_PATH": str(node_otel_modules())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


@contextmanager
def serving(environ: dict[str, str], **given: Any) -> Iterator[str]:
    """``otel-sentry-bridge serve`` (the CLI's function) in a thread; yields its URL; stops it cleanly.

    Roots wait 50 ms for late children unless ``root_delay`` says otherwise; stopping sends what waits."""
    stop = threading.Event()
    ready: list[str] = []
    started = threading.Event()
    outcome: list[int] = []

    def on_ready(url: str) -> None:
        ready.append(url)
        started.set()

    def run() -> None:
        settings = {"listen": "127.0.0.1:0", "root_delay": "0.05", **given}
        outcome.append(serve(settings, stop, environ=environ, ready=on_ready))
        started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10) and ready, f"serve did not start (exit {outcome})"
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(30)
        assert outcome == [0]


@contextmanager
def serving_app(dsn: str, root_delay: float = 0.05) -> Iterator[tuple[str, ReceiverApp]]:
    """``serve``'s app (``ReceiverApp`` over a ``SentrySink`` for ``dsn``) in a thread: its URL and the app
    (for its counters); the sink is shut down after."""
    sink = SentrySink(Routes.load(None, dsn), environ={}, root_delay=root_delay)
    app = ReceiverApp(sink)
    try:
        with running(app) as server:
            yield server.url, app
    finally:
        sink.shutdown(5)
