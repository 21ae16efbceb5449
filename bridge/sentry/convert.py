"""Pure functions from finished spans to Sentry events: the converter's public face.

- ``transaction_event(root, children, options)``: a local root and its descendants → one transaction;
- ``error_events(span, transaction, options, exceptions)``: its ``exception`` / ``sentry.message`` events →
  error and message events (``bridge.sentry.errors``);
- ``exception_event`` / ``message_event``: the same without a recorded span (unsampled requests);
- ``transaction_name``, ``span_op``, ``span_description``, ``span_status``: the naming rules
  (``bridge.sentry.naming``);
- ``dynamic_sampling_context``: the envelope header's ``trace``.

Spans are read through the attributes of the OpenTelemetry SDK's ``ReadableSpan`` only, so spans decoded
from OTLP work the same through an adapter with those attributes. Nothing here does I/O.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from bridge.sentry import naming
from bridge.sentry.context import (
    ConvertOptions,
    base_event,
    plain,
    request_context,
    resource_view,
    seconds,
    span_hex,
    tags_for,
    trace_hex,
    user_for,
)
from bridge.sentry.errors import error_events, exception_event, message_event
from bridge.sentry.privacy import filter_attributes

__all__ = [
    "ConvertOptions",
    "dynamic_sampling_context",
    "error_events",
    "exception_event",
    "message_event",
    "span_description",
    "span_op",
    "span_status",
    "transaction_event",
    "transaction_name",
]

logger = logging.getLogger(__name__)


def transaction_name(span: ReadableSpan) -> tuple[str, str]:
    """(name, ``transaction_info.source``) of a local root span, per the naming rules (docs/conversion.md)."""
    return naming.name_for(plain(span.attributes), span.name)  # a plain dict reads 3x faster than the proxy


def span_op(span: ReadableSpan) -> str:
    return naming.op_for(plain(span.attributes), span.kind)


def span_description(span: ReadableSpan) -> str:
    return naming.description_for(plain(span.attributes), span.kind, span.name)


def span_status(span: ReadableSpan) -> str:
    return naming.status_for(plain(span.attributes), span.status.status_code)


def _times(span: ReadableSpan) -> tuple[float, float]:
    """Start and end in seconds; an end before the start (or none) is clamped to the start."""
    start = seconds(span.start_time)
    end = seconds(span.end_time) if span.end_time else start
    if end < start:
        logger.debug("span %s ends before it starts: end clamped to start", span.name)
        end = start
    return start, end


def _child(span: ReadableSpan, send_default_pii: bool) -> dict[str, Any]:
    attributes = plain(span.attributes)  # one copy: the SDK's mapping proxy is slow to read
    start, end = _times(span)
    kind = span.kind
    out: dict[str, Any] = {
        "trace_id": trace_hex(span.context.trace_id),
        "span_id": span_hex(span.context.span_id),
        "op": naming.op_for(attributes, kind),
        "description": naming.description_for(attributes, kind, span.name),
        "status": naming.status_for(attributes, span.status.status_code),
        "start_timestamp": start,
        "timestamp": end,
        "data": filter_attributes(attributes, send_default_pii),
    }
    parent = span.parent
    if parent is not None and parent.span_id:
        out["parent_span_id"] = span_hex(parent.span_id)
    return out


def transaction_event(root: ReadableSpan, children: Sequence[ReadableSpan], options: ConvertOptions) -> dict[str, Any]:
    """The Sentry transaction of a local root span and its descendants that ended in this process."""
    attributes = plain(root.attributes)  # one copy: the SDK's mapping proxy is slow to read
    view = resource_view(getattr(root.resource, "attributes", None), options)
    pii = options.send_default_pii
    name, source = naming.name_for(attributes, root.name)
    start, end = _times(root)
    trace: dict[str, Any] = {
        "trace_id": trace_hex(root.context.trace_id),
        "span_id": span_hex(root.context.span_id),
        "op": naming.op_for(attributes, root.kind),
        "status": naming.status_for(attributes, root.status.status_code),
        "data": filter_attributes(attributes, pii),
    }
    parent = root.parent
    if parent is not None and parent.span_id:
        trace["parent_span_id"] = span_hex(parent.span_id)
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
    event = base_event(view, options)
    event["type"] = "transaction"
    event["transaction"] = name
    event["transaction_info"] = {"source": source}
    event["start_timestamp"] = start
    event["timestamp"] = end
    event["contexts"] = contexts
    if root.kind == SpanKind.SERVER:
        request = request_context(attributes, pii)
        if request:
            event["request"] = request
    user = user_for(attributes, pii)
    if user:
        event["user"] = user
    tags = tags_for(attributes, view)
    if tags:
        event["tags"] = tags
    event["spans"] = [_child(child, pii) for child in children]
    return event


def dynamic_sampling_context(
    *,
    trace_id: int,
    public_key: str,
    options: ConvertOptions,
    transaction: str | None,
    sample_rate: float | None,
    sampled: bool | None,
    source: str | None = None,
    resource: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The envelope header's ``trace`` (DSC), with the same environment and release as the events.

    ``resource`` (the resource's attributes) lets environment and release fall back to it as on events.
    The transaction name is left out when its ``source`` is ``url`` (high cardinality), as Sentry's SDKs do.
    """
    view = resource_view(resource, options)
    dsc = {"trace_id": trace_hex(trace_id), "public_key": public_key, "environment": view.environment}
    if view.release:
        dsc["release"] = view.release
    if transaction and source != "url":
        dsc["transaction"] = transaction
    if sample_rate is not None:
        dsc["sample_rate"] = repr(float(sample_rate))
    if sampled is not None:
        dsc["sampled"] = "true" if sampled else "false"
    return dsc
