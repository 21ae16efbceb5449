"""Sentry error and message events: from span events (``exception``, ``sentry.message``) and from live
exception objects (for requests whose span was not sampled). ``exception.values`` come from
``bridge.sentry.exceptions``.

Handled or not: an ``exception`` event whose ``exception.escaped`` is true did not get handled. OpenTelemetry's
``use_span`` (and so OpenTelemetry's WSGI middleware) records an exception that leaves the span with
``exception.escaped`` false, but then ends the span with status ERROR described as ``"Type: message"`` (or
``"message"``); so the last exception event of such a span also counts as escaped. Everything else is handled
(Sentry's own default for an event without mechanism). Escaped exceptions get ``{"type": "wsgi",
"handled": false}`` (``"otel"`` instead of ``"wsgi"`` for spans of non-Python services), handled ones
``{"type": "generic", "handled": true}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from bridge.sentry import naming
from bridge.sentry.context import (
    ConvertOptions,
    ResourceView,
    base_event,
    first_str,
    plain,
    request_context,
    resource_view,
    seconds,
    span_hex,
    tags_for,
    trace_hex,
    user_for,
)
from bridge.sentry.envelope import dumps
from bridge.sentry.exceptions import exception_values, safe_text, values_from_text
from bridge.sentry.privacy import MAX_VALUE_CHARS

__all__ = ["error_events", "exception_event", "message_event"]

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES: Final = 900 * 1024  # below Sentry's 1 MiB per event item, with room for the envelope
_LEVELS: Final = {
    "fatal": "fatal", "critical": "fatal", "error": "error", "err": "error", "warning": "warning",
    "warn": "warning", "info": "info", "information": "info", "log": "info", "debug": "debug", "trace": "debug",
}  # fmt: skip


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1"))


def _escaped(span: ReadableSpan, attributes: Mapping[str, Any], is_last_exception: bool) -> bool:
    if _truthy(attributes.get("exception.escaped")):
        return True
    status = span.status
    if not is_last_exception or status.status_code != StatusCode.ERROR or not status.description:
        return False
    short = (first_str(attributes, "exception.type") or "").rpartition(".")[2]
    message = safe_text(attributes.get("exception.message", ""))
    return status.description in (f"{short}: {message}", message)


def _is_recorded(exc: BaseException, attributes: Mapping[str, Any]) -> bool:
    """Whether the span event records ``exc`` (indices shift when the SDK drops events over its limit)."""
    recorded = attributes.get("exception.type")
    if recorded is None:
        return True
    cls = type(exc)
    module, name = getattr(cls, "__module__", ""), getattr(cls, "__qualname__", cls.__name__)
    return recorded in (name, f"{module}.{name}")


def _level(level: Any) -> str:
    return _LEVELS.get(level.strip().lower(), "info") if isinstance(level, str) else "info"


def _event_base(
    view: ResourceView,
    options: ConvertOptions,
    *,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    kind: SpanKind | None,
    status_code: StatusCode | None,
    transaction: str | None,
    attributes: Mapping[str, Any],
    timestamp: float,
) -> dict[str, Any]:
    event = base_event(view, options)
    event["timestamp"] = timestamp
    trace: dict[str, Any] = {
        "trace_id": trace_hex(trace_id),
        "span_id": span_hex(span_id),
        "op": naming.op_for(attributes, kind),
        "status": naming.status_for(attributes, status_code),
    }
    if parent_span_id:
        trace["parent_span_id"] = span_hex(parent_span_id)
    contexts: dict[str, Any] = {"trace": trace, "otel": {"resource": dict(view.resource)}}
    if view.runtime:
        contexts["runtime"] = dict(view.runtime)
    if view.os:
        contexts["os"] = dict(view.os)
    code = naming.http_status(attributes)
    if code is not None:
        contexts["response"] = {"status_code": code}
    celery = naming.celery_context(attributes)
    if celery is not None:
        contexts["celery"] = celery
    event["contexts"] = contexts
    if transaction:
        event["transaction"] = transaction[:MAX_VALUE_CHARS]
    if kind in (SpanKind.SERVER, None):
        request = request_context(attributes, options.send_default_pii)
        if request:
            event["request"] = request
    user = user_for(attributes, options.send_default_pii)
    if user:
        event["user"] = user
    tags = tags_for(attributes, view)
    if tags:
        event["tags"] = tags
    return event


def _fit(event: dict[str, Any]) -> dict[str, Any]:
    """Keep an event under Sentry's item limit: drop source context, then frames of older exceptions."""
    if len(dumps(event)) <= MAX_EVENT_BYTES:
        return event
    values = event.get("exception", {}).get("values", [])
    for value in values:
        for frame in value.get("stacktrace", {}).get("frames", []):
            for key in ("pre_context", "context_line", "post_context"):
                frame.pop(key, None)
    for value in values[:-1]:
        if len(dumps(event)) <= MAX_EVENT_BYTES:
            break
        value.pop("stacktrace", None)
    if len(dumps(event)) > MAX_EVENT_BYTES:
        event.pop("request", None)
        event["contexts"].pop("otel", None)
    logger.debug("error event %s trimmed to fit the size limit", event["event_id"])
    return event


def _mechanism_type(view: ResourceView, handled: bool, attributes: Mapping[str, Any] | None = None) -> str:
    if handled:
        return "generic"
    named = naming.mechanism_for(attributes) if attributes else None  # a task, a traced function...
    if named:
        return named
    return "wsgi" if view.language in (None, "python") else "otel"


def error_events(
    span: ReadableSpan,
    transaction: str | None,
    options: ConvertOptions,
    exceptions: Mapping[int, BaseException] | None = None,
    tracebacks: Mapping[int, TracebackType] | None = None,
) -> list[dict[str, Any]]:
    """One error event per ``exception`` event of ``span`` and one message event per ``sentry.message``
    event. ``exceptions`` maps an index in ``span.events`` to the live exception (exact frames), and
    ``tracebacks`` to its traceback as it was when recorded (see ``exception_values``)."""
    events: Sequence[Any] = span.events or ()
    exception_indices = [index for index, event in enumerate(events) if event.name == "exception"]
    if not exception_indices and not any(event.name == "sentry.message" for event in events):
        return []
    resource = getattr(span.resource, "attributes", None)
    view = resource_view(resource, options)
    attributes = plain(span.attributes)  # one copy: the SDK's mapping proxy is slow to read
    parent = span.parent
    out = []
    for index, recorded in enumerate(events):
        if recorded.name not in ("exception", "sentry.message"):
            continue
        try:
            event_attributes = plain(recorded.attributes)
            event = _event_base(
                view,
                options,
                trace_id=span.context.trace_id,
                span_id=span.context.span_id,
                parent_span_id=parent.span_id if parent is not None else None,
                kind=span.kind,
                status_code=span.status.status_code,
                transaction=transaction,
                attributes=attributes,
                timestamp=seconds(recorded.timestamp),
            )
            if recorded.name == "sentry.message":
                event["level"] = _level(event_attributes.get("sentry.message.level"))
                event["logentry"] = {"formatted": safe_text(event_attributes.get("sentry.message.text", ""))}
                out.append(event)
                continue
            event["level"] = "error"
            handled = not _escaped(span, event_attributes, index == exception_indices[-1])
            kind = _mechanism_type(view, handled, attributes)
            live = exceptions.get(index) if exceptions else None
            if live is not None and _is_recorded(live, event_attributes):
                values = exception_values(
                    live,
                    handled=handled,
                    mechanism_type=kind,
                    options=options,
                    traceback=tracebacks.get(index) if tracebacks else None,
                )
            else:
                values = values_from_text(
                    event_attributes, handled=handled, mechanism_type=kind, options=options, language=view.language
                )
            event["exception"] = {"values": values}
            out.append(_fit(event))
        except Exception:
            logger.warning("could not convert span event %d (%s) for Sentry", index, recorded.name, exc_info=True)
    return out


def _unrecorded_base(
    view: ResourceView,
    options: ConvertOptions,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    transaction: str | None,
    attributes: Mapping[str, Any] | None,
    status_code: StatusCode | None,
) -> dict[str, Any]:
    """The base of an event outside any recorded span: the request's attributes stand for the span's."""
    request = dict(attributes or {})
    return _event_base(
        view,
        options,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        kind=SpanKind.SERVER if naming.http_method(request) else None,
        status_code=status_code,
        transaction=transaction,
        attributes=request,
        timestamp=time.time(),
    )


def exception_event(
    exc: BaseException,
    *,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    transaction: str | None,
    handled: bool,
    attributes: Mapping[str, Any] | None,
    resource: Mapping[str, Any] | None,
    options: ConvertOptions,
    traceback: TracebackType | None = None,
) -> dict[str, Any]:
    """An error event for a live exception outside any recorded span (the request was not sampled).

    ``attributes`` are the request's span attributes (an HTTP server request when they name a method).
    """
    view = resource_view(resource, options)
    status = StatusCode.UNSET if handled else StatusCode.ERROR
    event = _unrecorded_base(view, options, trace_id, span_id, parent_span_id, transaction, attributes, status)
    event["level"] = "error"
    values = exception_values(
        exc,
        handled=handled,
        mechanism_type=_mechanism_type(view, handled, attributes),
        options=options,
        traceback=traceback,
    )
    event["exception"] = {"values": values}
    return _fit(event)


def message_event(
    text: str,
    level: str,
    *,
    trace_id: int,
    span_id: int,
    parent_span_id: int | None,
    transaction: str | None,
    attributes: Mapping[str, Any] | None,
    resource: Mapping[str, Any] | None,
    options: ConvertOptions,
) -> dict[str, Any]:
    """A message event (``capture_message``) linked to a trace, outside any recorded span."""
    view = resource_view(resource, options)
    event = _unrecorded_base(view, options, trace_id, span_id, parent_span_id, transaction, attributes, None)
    event["level"] = _level(level)
    event["logentry"] = {"formatted": safe_text(text)}
    return event
