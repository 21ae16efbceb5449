"""``serve``'s ``POST /v1/logs``: OTLP log records that carry an exception → Sentry error events.

A record is an exception when it has ``exception.type``, ``exception.message`` or ``exception.stacktrace``
attributes, or the event name ``exception`` (OpenTelemetry's convention for exceptions as log records,
``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs``). Each becomes one error event through the same converter as
span events: frames parsed from the stack-trace text in the six languages of ``bridge.stacktraces``, the
record's trace and span ids, environment and release from its resource, and the transaction name when spans
of its trace came through ``/v1/traces`` shortly before (the last ``MAX_TRACES`` traces are remembered).

- ``logs/dup`` senders report an exception twice, as a record and as a span event: whichever arrives first
  is sent, the other is recognised by (trace id, span id, type, message) and left out, so Sentry gets it
  once (:class:`LogIntake` is told of every decoded span for that).
- Records without an exception are counted and dropped (docs/logs.md says why, with figures).
- Bad input never fails the request: ids of the wrong length, or none, give the error a fresh trace
  (counted); a body that is a map or bytes becomes the error's text; a stack trace no parser recognises is
  kept as the error's value. Records of a service without a DSN are rejected (``partial_success``).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from bridge.receiver.decode import DecodeError, any_value, attributes
from bridge.receiver.otlpjson import json_items
from bridge.sentry.convert import error_events, transaction_name
from bridge.sentry.frames import parse_stacktrace
from bridge.sentry.privacy import MAX_VALUE_CHARS

__all__ = ["LogIntake", "LogsAccepted", "decode_logs", "MAX_TRACES", "EXCEPTION_KEYS"]

logger = logging.getLogger(__name__)

EXCEPTION_KEYS = ("exception.type", "exception.message", "exception.stacktrace")
MAX_TRACES = 10_000  # traces whose transaction name is remembered; also the bound of the duplicate memory
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_LEVELS = ((21, "fatal"), (17, "error"), (13, "warning"), (9, "info"), (1, "debug"))  # OTel severity numbers


def decode_logs(data: bytes, json_body: bool) -> tuple[ExportLogsServiceRequest, int]:
    """The request, and how many records had ids that are not hex (JSON; their ids are dropped)."""
    request = ExportLogsServiceRequest()
    if not json_body:
        try:
            request.ParseFromString(data)
        except Exception as exc:
            raise DecodeError(f"not an OTLP ExportLogsServiceRequest in protobuf: {exc}") from None
        return request, 0
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("an OTLP JSON request must be a JSON object")
    bad = 0
    for resource_logs in json_items(document, "resourceLogs", "resource_logs"):
        for scope_logs in json_items(resource_logs, "scopeLogs", "scope_logs"):
            for record in json_items(scope_logs, "logRecords", "log_records"):
                bad += not _hex_ids_to_base64(record)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"not an OTLP ExportLogsServiceRequest in JSON: {exc}") from None
    return request, bad


def _hex_ids_to_base64(record: dict[str, Any]) -> bool:
    """OTLP JSON ids are hex; protobuf's JSON mapping reads base64. Ids that are not hex are dropped."""
    good = True
    for key in ("traceId", "trace_id", "spanId", "span_id"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, str) and _HEX.fullmatch(value):
            record[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        else:
            del record[key]
            good = False
    return good


@dataclass
class LogsAccepted:
    errors: int = 0
    rejected: int = 0
    problems: Counter[str] = field(default_factory=Counter)

    def reject(self, problem: str, count: int = 1) -> None:
        self.rejected += count
        if problem in self.problems or len(self.problems) < 5:
            self.problems[problem] += count

    def response(self, json_body: bool) -> bytes:
        response = ExportLogsServiceResponse()
        if self.rejected:
            response.partial_success.rejected_log_records = self.rejected
            response.partial_success.error_message = "; ".join(
                f"{problem} ({count} records)" for problem, count in self.problems.items()
            )[:4000]
        if json_body:
            return json_format.MessageToJson(response, indent=None).encode()  # type: ignore[no-any-return]
        return response.SerializeToString()  # type: ignore[no-any-return]


class LogIntake:
    """Turns decoded log requests into Sentry errors on ``sink``'s legs (``sink.destination(service)``)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.counts: Counter[str] = Counter()
        self._names: OrderedDict[int, tuple[str, str]] = OrderedDict()  # trace id → transaction (name, source)
        self._reported: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self._lock = threading.Lock()

    # -- the traces side: names of buffered transactions, exceptions already reported -------------------
    def note_spans(self, spans: Sequence[ReadableSpan]) -> list[tuple[Any, ...]]:
        """Remember local roots' transaction names; leave out span events already reported as records.

        Returns the keys of the exception events kept: pass them to :meth:`reported` once the spans were
        taken (a request refused with 429 is retried, and must not find its own exceptions reported).
        """
        kept_keys: list[tuple[Any, ...]] = []
        with self._lock:
            for span in spans:
                context = span.context
                if context is None:
                    continue
                parent = span.parent
                if parent is None or parent.is_remote:
                    self._remember(self._names, context.trace_id, transaction_name(span))
                events = span.events
                if not any(event.name == "exception" for event in events):
                    continue
                kept = []
                for event in events:
                    if event.name == "exception":
                        key = _key(context.trace_id, context.span_id, event.attributes or {})
                        if key in self._reported:
                            self.counts["duplicates_left_out"] += 1
                            continue
                        kept_keys.append(key)
                    kept.append(event)
                if len(kept) != len(events):
                    span._events = tuple(kept)  # type: ignore[attr-defined]  # the SDK's ReadableSpan keeps them there
        return kept_keys

    def reported(self, keys: Sequence[tuple[Any, ...]]) -> None:
        """These exceptions (span events taken by the sink) are on their way to Sentry."""
        with self._lock:
            for key in keys:
                self._remember(self._reported, key, None)

    def _remember(self, book: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        book[key] = value
        book.move_to_end(key)
        if len(book) > MAX_TRACES:
            book.popitem(last=False)

    # -- the logs side ----------------------------------------------------------------------------------
    def accept(self, request: ExportLogsServiceRequest, bad_ids: int = 0) -> LogsAccepted:
        """Queue one error per exception record; raise the sink's ``Overloaded`` (taking none) when full."""
        from bridge.receiver.sink import RETRY_AFTER_SECONDS, Overloaded

        accepted = LogsAccepted()
        found: list[tuple[Any, ReadableSpan, str, Optional[str], tuple[Any, ...]]] = []
        others = duplicates = 0
        fresh_ids = bad_ids
        for resource_logs in request.resource_logs:
            resource = Resource(attributes(resource_logs.resource.attributes), resource_logs.schema_url or None)
            service = resource.attributes.get("service.name")
            service = service if isinstance(service, str) else "unknown_service"
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    try:
                        carried = attributes(record.attributes)
                        if not _is_exception(record, carried):
                            others += 1
                            continue
                        destination = self._destination(service)
                        if destination is None:
                            accepted.reject(f"no Sentry DSN for service.name {service[:100]!r}: dropped")
                            continue
                        carrier, level, fresh, message, key = self._carrier(record, carried, resource)
                        fresh_ids += fresh
                        found.append((destination, carrier, level, message, key))
                    except Exception as exc:  # one record never fails the request
                        logger.debug("could not convert a log record", exc_info=True)
                        accepted.reject(f"log record could not be converted: {type(exc).__name__}")
        wanted: Counter[int] = Counter(id(item[0]) for item in found)
        destinations = {id(item[0]): item[0] for item in found}
        if any(_no_room(destination, wanted[key]) for key, destination in destinations.items()):
            raise Overloaded(429, RETRY_AFTER_SECONDS, "the queue to Sentry is full; retry later")
        sent = 0
        for destination, carrier, level, message, key in found:
            with self._lock:  # only now: a request refused above is retried whole, nothing of it reported
                duplicate = key in self._reported
                if not duplicate:
                    self._remember(self._reported, key, None)
            if duplicate:
                duplicates += 1
            else:
                self._submit(destination, carrier, level, message)
                sent += 1
        accepted.errors = sent
        with self._lock:
            self.counts["errors"] += sent
            self.counts["records_without_exception_dropped"] += others
            self.counts["ids_replaced"] += fresh_ids
            self.counts["duplicates_left_out"] += duplicates
            self.counts["rejected"] += accepted.rejected
        return accepted

    def _destination(self, service: str) -> Any:
        find = getattr(self.sink, "destination", None)
        return find(service) if find is not None else None

    def _carrier(
        self, record: Any, carried: dict[str, Any], resource: Resource
    ) -> tuple[ReadableSpan, str, int, Optional[str], tuple[Any, ...]]:
        """The record as a one-event span for the converter, its level, 1 when its ids were replaced, its log
        message when it has one besides the exception's (``logger.error("checkout failed", exc)``), and the key
        that recognises the same exception as a span event."""
        exception = {key: value for key, value in carried.items() if key.startswith("exception.")}
        rest = {key: value for key, value in carried.items() if not key.startswith("exception.")}
        as_sent = dict(exception)  # what a span event of the same exception carries (logs/dup)
        body = any_value(record.body) if record.HasField("body") else None
        body_text = body if isinstance(body, str) else None if body is None else json.dumps(body, default=str)
        message = None
        if "exception.message" not in exception and body_text:
            exception["exception.message"] = body_text
        elif body_text and body_text != exception.get("exception.message"):
            message = body_text
        stack = exception.get("exception.stacktrace")
        if isinstance(stack, str) and stack.strip():
            language = resource.attributes.get("telemetry.sdk.language")
            language = language if isinstance(language, str) else None
            if not any(error.frames for error in parse_stacktrace(stack, language)):
                stated = exception.get("exception.message")  # any AnyValue kind: a map or bytes too
                message = stated if isinstance(stated, str) or stated is None else str(stated)
                exception["exception.message"] = f"{message}\n{stack}" if message else stack
        fresh = 0
        trace_raw, span_raw = bytes(record.trace_id), bytes(record.span_id)
        if len(trace_raw) == 16 and any(trace_raw):
            trace_id = int.from_bytes(trace_raw, "big")
            if len(span_raw) == 8 and any(span_raw):
                span_id = int.from_bytes(span_raw, "big")
            else:
                span_id, fresh = _new_id(64), int(bool(span_raw))  # present but unusable: counted
        else:
            trace_id, span_id = _new_id(128), _new_id(64)
            fresh = int(bool(trace_raw))  # present but unusable: counted (absent ids are not a fault)
        key = _key(trace_id, span_id, as_sent)
        timestamp = record.time_unix_nano or record.observed_time_unix_nano or None
        carrier = ReadableSpan(
            name="",
            context=SpanContext(trace_id, span_id, False, _SAMPLED),
            parent=None,
            resource=resource,
            attributes=rest,
            events=[Event("exception", exception, timestamp)],
            kind=SpanKind.INTERNAL,
            start_time=timestamp,
            end_time=timestamp,
        )
        return carrier, _level(record.severity_number), fresh, message, key

    def _submit(self, destination: Any, carrier: ReadableSpan, level: str, message: Optional[str]) -> None:
        leg = destination.leg

        def build() -> Any:  # on the transport's worker: spans of the trace may have come in meanwhile
            assert carrier.context is not None
            with self._lock:
                named, source = self._names.get(carrier.context.trace_id) or (None, None)
            events = error_events(carrier, named, leg.convert_options)
            if not events:
                return None
            event = events[0]
            event["level"] = level
            if message:  # as sentry-sdk's logging integration shows a logged exception's message
                event["logentry"] = {"formatted": message[:MAX_VALUE_CHARS]}
            dsc = leg.head_dsc(carrier.context.trace_id, True, (named, source) if named else None)
            return leg.finish_event(event, None, dsc)  # the leg's tail: sample_rate, before_send, envelope

        destination.transport.submit("error", build)

    def health(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def _no_room(destination: Any, count: int) -> bool:
    """Whether ``count`` more errors would overflow the leg's queue (then the sender retries the request).

    An empty queue takes any request: one larger than the queue would otherwise be refused forever (the
    transport counts what does not fit)."""
    if destination.saturated():
        return True
    transport = getattr(destination, "transport", None)
    pending, size = getattr(transport, "pending", 0), getattr(transport, "queue_size", None)
    return bool(size is not None and pending and pending + count > size)


def _is_exception(record: Any, carried: Mapping[str, Any]) -> bool:
    return record.event_name == "exception" or any(key in carried for key in EXCEPTION_KEYS)


def _key(trace_id: int, span_id: int, exception: Mapping[str, Any]) -> tuple[Any, ...]:
    return (trace_id, span_id, str(exception.get("exception.type")), str(exception.get("exception.message")))


def _level(severity_number: int) -> str:
    for floor, level in _LEVELS:
        if severity_number >= floor:
            return level if level in ("fatal", "error", "warning") else "error"
    return "error"  # unspecified: an exception is an error


def _new_id(bits: int) -> int:
    return random.getrandbits(bits) or 1
