"""OTLP trace requests (protobuf or JSON) → the OpenTelemetry SDK's ``ReadableSpan``: the converter's span view.

One span that cannot be used (bad ids, no timestamps) is rejected and counted for the response's
``partial_success``; only a body that cannot be decoded at all fails the request (:class:`DecodeError`).

Choices, where OTLP leaves room:
- a parent is remote when the span's ``flags`` say so (bits ``0x100`` "has is_remote" and ``0x200``
  "is remote", which the OpenTelemetry SDKs set); without those bits, a SERVER or CONSUMER span with a
  parent starts a local segment of the trace (remote parent), any other kind has a local parent;
- every received span is sampled (only sampled spans are exported), whatever its W3C flags byte says;
- attribute values: arrays become tuples, key-value lists dicts, bytes base64 text (OTel's rule for
  non-OTLP formats), non-finite doubles the text ``NaN`` / ``Infinity`` / ``-Infinity`` (JSON has no
  such numbers), empty values are dropped;
- equal resources and scopes from successive requests are the same objects (a bounded cache), so buffered
  spans share them and the converter's per-resource cache hits.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Optional, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode

__all__ = ["DecodeError", "Decoded", "ReceivedSpan", "decode_protobuf", "spans_from_request", "any_value"]

logger = logging.getLogger(__name__)

HAS_IS_REMOTE = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_KINDS = {
    1: SpanKind.INTERNAL,
    2: SpanKind.SERVER,
    3: SpanKind.CLIENT,
    4: SpanKind.PRODUCER,
    5: SpanKind.CONSUMER,
}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_STATUS_UNSET = Status(StatusCode.UNSET)
_STATUS_OK = Status(StatusCode.OK)
# Memory a buffered span takes, estimated from its size on the wire. Measured with tracemalloc (see
# benchmarks/serve_throughput.py): about 1 450 bytes plus 1 byte per byte on the wire; the estimate stays above.
SPAN_BASE_BYTES = 1600
SPAN_BYTES_PER_WIRE_BYTE = 1.25
MAX_PROBLEMS = 5  # distinct problem messages kept for the response


class DecodeError(ValueError):
    """The body is not an OTLP trace request at all (HTTP 400)."""


class ReceivedSpan(ReadableSpan):
    """A span decoded from OTLP: a real SDK ``ReadableSpan``, plus its estimated memory in bytes."""

    def __init__(self, *, weight: int, **fields: Any) -> None:
        super().__init__(**fields)
        self.weight = weight


@dataclass
class Decoded:
    spans: list[ReceivedSpan] = field(default_factory=list)
    rejected: int = 0
    problems: Counter[str] = field(default_factory=Counter)

    def reject(self, problem: str, count: int = 1) -> None:
        self.rejected += count
        if problem in self.problems or len(self.problems) < MAX_PROBLEMS:
            self.problems[problem] += count

    def message(self) -> str:
        """The ``partial_success.error_message``: each problem with its count."""
        return "; ".join(
            f"{problem} ({count} span{'s' if count > 1 else ''})" for problem, count in self.problems.items()
        )


T = TypeVar("T")


class _Interner(Generic[T]):
    """A small thread-safe LRU: equal keys give the very same object."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes, make: Callable[[], T]) -> T:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        made = make()
        with self._lock:
            found = self._items.setdefault(key, made)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return found


_resources: _Interner[Resource] = _Interner(512)
_scopes: _Interner[InstrumentationScope] = _Interner(512)


def any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value (None when empty)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "double_value":
        number = float(value.double_value)
        if math.isfinite(number):
            return number
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return getattr(value, kind)  # bool_value, int_value


def attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if pair.key:
            converted = any_value(pair.value)
            if converted is not None:
                out[pair.key] = converted
    return out


def decode_protobuf(body: bytes) -> Decoded:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # google.protobuf.message.DecodeError, RecursionError...
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    return spans_from_request(request)


def _resource(resource_spans: Any) -> Resource:
    message = resource_spans.resource
    key = message.SerializeToString(deterministic=True) + b"\0" + resource_spans.schema_url.encode()
    return _resources.get(key, lambda: Resource(attributes(message.attributes), resource_spans.schema_url or None))


def _scope(scope_spans: Any) -> InstrumentationScope:
    message = scope_spans.scope
    key = message.SerializeToString(deterministic=True) + b"\0" + scope_spans.schema_url.encode()
    return _scopes.get(
        key,
        lambda: InstrumentationScope(
            message.name,
            message.version or None,
            scope_spans.schema_url or None,
            attributes(message.attributes) or None,
        ),
    )


def spans_from_request(request: ExportTraceServiceRequest) -> Decoded:
    """Every usable span of ``request``; the others are counted in ``rejected`` with their problem."""
    decoded = Decoded()
    for resource_spans in request.resource_spans:
        resource: Optional[Resource] = None
        for scope_spans in resource_spans.scope_spans:
            if not scope_spans.spans:
                continue
            if resource is None:
                resource = _resource(resource_spans)
            scope = _scope(scope_spans)
            for span in scope_spans.spans:
                problem = _problem(span)
                if problem is not None:
                    decoded.reject(problem)
                    continue
                try:
                    decoded.spans.append(_span(span, resource, scope))
                except Exception as exc:  # never fail the request for one span
                    logger.debug("could not decode a span", exc_info=True)
                    decoded.reject(f"span could not be decoded: {type(exc).__name__}")
    return decoded


def _valid_id(raw: bytes, size: int) -> bool:
    return len(raw) == size and raw != bytes(size)


def _problem(span: Any) -> Optional[str]:
    if not _valid_id(span.trace_id, 16):
        return "invalid trace_id: must be 16 bytes, not all zero"
    if not _valid_id(span.span_id, 8):
        return "invalid span_id: must be 8 bytes, not all zero"
    if len(span.parent_span_id) not in (0, 8):
        return "invalid parent_span_id: must be empty or 8 bytes"
    if not span.start_time_unix_nano or not span.end_time_unix_nano:
        return "start_time_unix_nano and end_time_unix_nano are required"
    return None


def _trace_state(text: str) -> Optional[TraceState]:
    if not text:
        return None
    try:
        return TraceState.from_header([text])
    except Exception:
        return None


def _span(span: Any, resource: Resource, scope: InstrumentationScope) -> ReceivedSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    kind = _KINDS.get(span.kind, SpanKind.INTERNAL)
    context = SpanContext(
        trace_id, int.from_bytes(span.span_id, "big"), False, _SAMPLED, _trace_state(span.trace_state)
    )
    parent: Optional[SpanContext] = None
    if span.parent_span_id and span.parent_span_id != bytes(8):
        flags = span.flags
        remote = bool(flags & IS_REMOTE) if flags & HAS_IS_REMOTE else kind in (SpanKind.SERVER, SpanKind.CONSUMER)
        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), remote, _SAMPLED)
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    events = [Event(e.name, attributes(e.attributes), e.time_unix_nano or start) for e in span.events]
    links = []
    for link in span.links:
        if _valid_id(link.trace_id, 16) and _valid_id(link.span_id, 8):
            link_context = SpanContext(
                int.from_bytes(link.trace_id, "big"),
                int.from_bytes(link.span_id, "big"),
                bool(link.flags & IS_REMOTE) if link.flags & HAS_IS_REMOTE else True,
                _SAMPLED,
            )
            links.append(Link(link_context, attributes(link.attributes)))
    code = span.status.code
    if code == 2:
        status = Status(StatusCode.ERROR, span.status.message or None)
    else:
        status = _STATUS_OK if code == 1 else _STATUS_UNSET
    return ReceivedSpan(
        weight=SPAN_BASE_BYTES + int(SPAN_BYTES_PER_WIRE_BYTE * span.ByteSize()),
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes(span.attributes),
        events=events,
        links=links,
        kind=kind,
        status=status,
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )
