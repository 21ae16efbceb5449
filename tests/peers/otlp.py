"""An OTLP/HTTP trace and metrics receiver on loopback: real HTTP in, decoded by the official ``opentelemetry-proto``.

``POST /v1/traces`` with ``application/x-protobuf`` (or OTLP JSON, ``application/json``), gzip or deflate
honoured. Every request is decoded before it is answered; spans come back as plain ``SpanView`` records.
``POST /v1/metrics`` (``ExportMetricsServiceRequest``) likewise, as ``PointView`` records; ``metrics=False``
makes it a collector without a metrics pipeline (404 there, as the OpenTelemetry Collector answers).
Faults: assign ``receiver.responder`` (``Request -> Reply``); decoding still happens, and each batch remembers
the status it was answered with, so ``accepted_only=True`` shows what a collector would have kept.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags, Status

from tests.httpserver import Reply, Request, Responder, decompress
from tests.judges import decode_otlp
from tests.peers.receiver import JudgingReceiver

__all__ = [
    "SpanView",
    "Batch",
    "PointView",
    "OtlpReceiver",
    "accept",
    "decode_request",
    "decode_metrics_request",
    "span_views",
    "point_views",
]

_JSON_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


@dataclass(frozen=True)
class SpanView:
    """One received span in plain Python: ids in lower-case hex, enums by short name, attributes as dicts."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    parent_is_remote: Optional[bool]  # None when the sender did not say
    kind: str  # "SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER", "UNSPECIFIED"
    status: str  # "UNSET", "OK", "ERROR"
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]  # arrays as lists, kvlists as dicts
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]  # (trace_id, span_id, attributes)
    resource: dict[str, Any]
    scope: str
    scope_version: str
    trace_state: str


@dataclass(frozen=True)
class Batch:
    """One export request: its spans and the status the receiver answered with (0 for a hang)."""

    request: Request
    spans: list[SpanView]
    status: int

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _parent_is_remote(flags: int) -> Optional[bool]:
    if not flags & SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK:
        return None
    return bool(flags & SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)


def span_views(message: ExportTraceServiceRequest) -> list[SpanView]:
    """Flatten a decoded export request into ``SpanView`` records, in the order they were sent."""
    views = []
    for resource_spans in message.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                views.append(
                    SpanView(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        parent_is_remote=_parent_is_remote(span.flags),
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        status_message=span.status.message,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=[(event.name, _attributes(event.attributes)) for event in span.events],
                        links=[
                            (link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
                            for link in span.links
                        ],
                        resource=resource,
                        scope=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        trace_state=span.trace_state,
                    )
                )
    return views


@dataclass(frozen=True)
class PointView:
    """One received metric data point in plain Python."""

    name: str
    unit: str
    kind: str  # "histogram", "sum", "gauge", "exponential_histogram", "summary"
    attributes: dict[str, Any]
    value: Optional[float]  # sums and gauges
    count: Optional[int]  # histograms
    total: Optional[float]  # histograms: the sum
    bounds: tuple[float, ...]  # histograms: explicit bucket boundaries
    exemplars: int
    temporality: str  # "CUMULATIVE", "DELTA", "" (gauges)
    monotonic: Optional[bool]  # sums
    resource: dict[str, Any]
    scope: str
    scope_version: str


def point_views(message: ExportMetricsServiceRequest) -> list[PointView]:
    """Flatten a decoded metrics export into ``PointView`` records, in the order they were sent."""
    views = []
    for resource_metrics in message.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or ""
                data = getattr(metric, kind) if kind else None
                temporality = ""
                if data is not None and hasattr(data, "aggregation_temporality"):
                    temporality = ("", "DELTA", "CUMULATIVE")[data.aggregation_temporality]
                for point in data.data_points if data is not None else ():
                    number = point.WhichOneof("value") if hasattr(point, "as_int") else None
                    views.append(
                        PointView(
                            name=metric.name,
                            unit=metric.unit,
                            kind=kind,
                            attributes=_attributes(point.attributes),
                            value=float(getattr(point, number)) if number else None,
                            count=int(point.count) if kind == "histogram" else None,
                            total=float(point.sum) if kind == "histogram" else None,
                            bounds=tuple(point.explicit_bounds) if kind == "histogram" else (),
                            exemplars=len(point.exemplars) if hasattr(point, "exemplars") else 0,
                            temporality=temporality,
                            monotonic=bool(data.is_monotonic) if kind == "sum" else None,
                            resource=resource,
                            scope=scope_metrics.scope.name,
                            scope_version=scope_metrics.scope.version,
                        )
                    )
    return views


def _hex_ids_to_base64(value: Any) -> Any:
    """OTLP JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(value, dict):
        return {
            key: base64.b64encode(bytes.fromhex(item)).decode()
            if key in _JSON_ID_KEYS and isinstance(item, str)
            else _hex_ids_to_base64(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids_to_base64(item) for item in value]
    return value


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def decode_request(request: Request) -> ExportTraceServiceRequest:
    """Decode one ``POST /v1/traces``; raises on anything a collector would refuse."""
    encoding = request.headers.get("content-encoding", "")
    content_type = _content_type(request)
    if content_type == "application/x-protobuf":
        return decode_otlp(request.body, encoding)
    if content_type == "application/json":
        document = json.loads(decompress(request.body, encoding) if encoding else request.body)
        message = ExportTraceServiceRequest()
        json_format.Parse(json.dumps(_hex_ids_to_base64(document)), message)
        return message
    raise ValueError(f"unsupported Content-Type {content_type!r}")


def decode_metrics_request(request: Request) -> ExportMetricsServiceRequest:
    """Decode one ``POST /v1/metrics``; raises on anything a collector would refuse."""
    encoding = request.headers.get("content-encoding", "")
    body = decompress(request.body, encoding) if encoding else request.body
    content_type = _content_type(request)
    message = ExportMetricsServiceRequest()
    if content_type == "application/x-protobuf":
        message.ParseFromString(body)
        return message
    if content_type == "application/json":
        json_format.Parse(json.dumps(_hex_ids_to_base64(json.loads(body))), message)
        return message
    raise ValueError(f"unsupported Content-Type {content_type!r}")


def accept(request: Request) -> Reply:
    """What a collector answers to a good export: an empty ``Export{Trace,Metrics}ServiceResponse``."""
    if _content_type(request) == "application/json":
        return Reply(200, {"Content-Type": "application/json"}, b"{}")
    response = ExportMetricsServiceResponse() if request.path == "/v1/metrics" else ExportTraceServiceResponse()
    body = response.SerializeToString()
    return Reply(200, {"Content-Type": "application/x-protobuf"}, body)


class OtlpReceiver(JudgingReceiver):
    """``with OtlpReceiver() as receiver:``; point an exporter at ``receiver.endpoint``.

    ``responder`` is what the receiver answers (default ``accept``); every request is decoded first whatever
    it is answered. Requests that cannot be decoded, or go elsewhere than ``POST /v1/traces``, are answered
    400/404 and listed in ``problems``.
    """

    def __init__(self, responder: Optional[Responder] = None, port: int = 0, metrics: bool = True) -> None:
        self.batches: list[Batch] = []
        self.metric_batches: list[tuple[Request, list[PointView], int]] = []  # (request, points, status)
        self.problems: list[str] = []
        self.metrics = metrics
        super().__init__(accept, responder, port)

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def _receive(self, request: Request) -> Reply:
        if request.method == "POST" and request.path == "/v1/metrics":
            return self._receive_metrics(request)
        if request.method != "POST" or request.path != "/v1/traces":
            self._problem(f"{request.method} {request.path}: not an OTLP trace export")
            return Reply(404)
        try:
            spans = span_views(decode_request(request))
        except Exception as exc:  # anything the decoder refuses is the sender's problem
            self._problem(f"undecodable export ({request.headers.get('content-type')!r}): {exc!r}")
            return Reply(400, {"Content-Type": "text/plain"}, str(exc).encode())
        reply = self._answer(request)
        with self._arrived:
            self.batches.append(Batch(request, spans, 0 if reply.hang else reply.status))
            self._arrived.notify_all()
        return reply

    def _receive_metrics(self, request: Request) -> Reply:
        if not self.metrics:  # a collector without a metrics pipeline has no route there
            with self._arrived:
                self.metric_batches.append((request, [], 404))
                self._arrived.notify_all()
            return Reply(404, {"Content-Type": "text/plain"}, b"404 page not found")
        try:
            points = point_views(decode_metrics_request(request))
        except Exception as exc:
            self._problem(f"undecodable metrics export ({request.headers.get('content-type')!r}): {exc!r}")
            return Reply(400, {"Content-Type": "text/plain"}, str(exc).encode())
        reply = self._answer(request)
        with self._arrived:
            self.metric_batches.append((request, points, 0 if reply.hang else reply.status))
            self._arrived.notify_all()
        return reply

    def points(self, name: Optional[str] = None) -> list[PointView]:
        """Every metric data point received (of metric ``name``), in arrival order."""
        with self._arrived:
            return [
                point for _, points, _ in self.metric_batches for point in points if name is None or point.name == name
            ]

    def wait_for_points(self, name: str, count: int, timeout: float = 10.0) -> list[PointView]:
        """Block until an export carried at least ``count`` points of metric ``name``; returns that export's."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.latest_points(name)) >= count, timeout):
                raise AssertionError(f"no export with {count} {name} points within {timeout}s; {self.problems}")
            return self.latest_points(name)

    def latest_points(self, name: str) -> list[PointView]:
        """The points of metric ``name`` in the last export that had any (cumulative: the current totals)."""
        with self._arrived:
            for _, points, _ in reversed(self.metric_batches):
                found = [point for point in points if point.name == name]
                if found:
                    return found
            return []

    def _problem(self, text: str) -> None:
        with self._arrived:
            self.problems.append(text)
            self._arrived.notify_all()

    def clear(self) -> None:
        super().clear()
        with self._arrived:
            self.batches.clear()
            self.metric_batches.clear()
            self.problems.clear()

    def spans(self, accepted_only: bool = False) -> list[SpanView]:
        """Every span received, in arrival order (only from 2xx-answered exports with ``accepted_only``)."""
        with self._arrived:
            return [span for batch in self.batches if batch.accepted or not accepted_only for span in batch.spans]

    def wait_for_spans(self, count: int, timeout: float = 10.0, accepted_only: bool = False) -> list[SpanView]:
        """Block until at least ``count`` spans arrived; AssertionError (with any problems) on timeout."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.spans(accepted_only)) >= count, timeout):
                got = len(self.spans(accepted_only))
                raise AssertionError(f"expected {count} spans within {timeout}s, got {got}; problems: {self.problems}")
            return self.spans(accepted_only)

    def assert_all_valid(self) -> None:
        with self._arrived:
            assert not self.problems, "OTLP receiver problems:\n" + "\n".join(self.problems)

    def take_problems(self) -> list[str]:
        """The problems so far, forgotten afterwards (for tests that send bad exports on purpose)."""
        with self._arrived:
            problems, self.problems = self.problems, []
            return problems
