"""``SentryPropagator``: Sentry's ``sentry-trace`` and ``baggage`` headers, as an OpenTelemetry propagator.

Registered as ``sentry_bridge`` in the ``opentelemetry_propagator`` entry-point group, so
``OTEL_PROPAGATORS=tracecontext,baggage,sentry_bridge`` works for the bridge and for OpenTelemetry's own
configuration alike. (sentry-sdk registers the name ``sentry`` for its own propagator, which works only
with sentry-sdk's span processor; ``bridge.init()`` reads ``sentry`` as this one.)

Extract: ``sentry-trace: {trace_id:32 hex}-{span_id:16 hex}[-{0|1}]`` continues the trace only when no
earlier propagator of the composite (W3C ``traceparent``) already did: W3C wins. A malformed header is
ignored. The upstream's ``sentry-*`` baggage entries (its DSC, to be kept unchanged) go into the context
as a :class:`bridge.dsc.Incoming` when they belong to the continued trace; a ``sentry-trace`` without the
sampled flag marks the decision as deferred to this service (see ``bridge.sampling``).

Inject: ``sentry-trace`` with the sampled flag of the trace flags, and ``baggage`` = whatever the carrier's
``baggage`` already holds (the W3C baggage propagator's output, when it ran first) without its ``sentry-*``
entries, followed by the trace's DSC. List this propagator after ``baggage`` (``bridge.init()`` does).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.propagators import textmap
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from bridge.dsc import INCOMING_KEY, Incoming, merge_baggage, sentry_items
from bridge.tracebook import current_span_dsc

__all__ = ["SentryPropagator", "SENTRY_TRACE_HEADER", "BAGGAGE_HEADER", "parse_sentry_trace"]

logger = logging.getLogger(__name__)

SENTRY_TRACE_HEADER = "sentry-trace"
BAGGAGE_HEADER = "baggage"
_SENTRY_TRACE = re.compile(r"^[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*$")


def parse_sentry_trace(header: Optional[str]) -> Optional[tuple[int, int, Optional[bool]]]:
    """``(trace_id, span_id, sampled or None)``; None for a missing, malformed or all-zero header."""
    if not header:
        return None
    match = _SENTRY_TRACE.match(header)
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id:
        return None
    flag = match.group(3)
    return trace_id, span_id, None if flag is None else flag == "1"


def _first(values: Optional[Any]) -> Optional[str]:
    if not values:
        return None
    if isinstance(values, str):
        return values
    return str(next(iter(values), "")) or None


def _joined(values: Optional[Any]) -> str:
    if not values:
        return ""
    if isinstance(values, str):
        return values
    return ",".join(str(value) for value in values)


def _take_existing(carrier: Any, name: str) -> Optional[str]:
    """The value a mapping carrier already holds for ``name``; a differently-cased key is removed (we rewrite it)."""
    if not isinstance(carrier, Mapping):
        return None
    value = carrier.get(name)
    if value is None:
        for key in list(carrier):
            if isinstance(key, str) and key.lower() == name:
                value = carrier[key]
                if isinstance(carrier, MutableMapping):
                    del carrier[key]
                break
    return _joined(value) or None


class SentryPropagator(textmap.TextMapPropagator):
    """Continue traces started by Sentry SDKs; propagate ``sentry-trace`` and the DSC downstream."""

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Optional[context_api.Context] = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> context_api.Context:
        if context is None:
            context = context_api.get_current()
        try:
            return self._extract(carrier, context, getter)
        except Exception:  # a propagator never breaks the request
            logger.debug("otel-sentry-bridge: could not extract sentry-trace/baggage", exc_info=True)
            return context

    def _extract(
        self, carrier: textmap.CarrierT, context: context_api.Context, getter: textmap.Getter[textmap.CarrierT]
    ) -> context_api.Context:
        parent = trace_api.get_current_span(context).get_span_context()
        deferred = False
        if parent.is_valid and parent.is_remote:
            trace_id = parent.trace_id  # an earlier propagator (W3C traceparent) continued the trace: it wins
        else:
            parsed = parse_sentry_trace(_first(getter.get(carrier, SENTRY_TRACE_HEADER)))
            if parsed is None:
                return context
            trace_id, span_id, sampled = parsed
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
            span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
            context = trace_api.set_span_in_context(NonRecordingSpan(span_context), context)
            deferred = sampled is None
        items = sentry_items(_joined(getter.get(carrier, BAGGAGE_HEADER)))
        if items.get("trace_id", f"{trace_id:032x}").lower() != f"{trace_id:032x}":
            logger.debug("otel-sentry-bridge: baggage names another trace; its sentry entries are ignored")
            items = {}
        if items or deferred:
            context = context_api.set_value(INCOMING_KEY, Incoming(items, deferred), context)
        return context

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Optional[context_api.Context] = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        try:
            span = trace_api.get_current_span(context)
            span_context = span.get_span_context()
            if not span_context.is_valid:
                return
            flag = "1" if span_context.trace_flags.sampled else "0"
            setter.set(carrier, SENTRY_TRACE_HEADER, f"{span_context.trace_id:032x}-{span_context.span_id:016x}-{flag}")
            dsc = current_span_dsc(context)
            if dsc:
                setter.set(carrier, BAGGAGE_HEADER, merge_baggage(_take_existing(carrier, BAGGAGE_HEADER), dsc))
        except Exception:  # a propagator never breaks the outgoing request
            logger.debug("otel-sentry-bridge: could not inject sentry-trace/baggage", exc_info=True)

    @property
    def fields(self) -> set[str]:
        return {SENTRY_TRACE_HEADER, BAGGAGE_HEADER}
