"""The trace's dynamic sampling context (DSC): frozen from upstream when one came in, else ours.

Sentry's rule: the DSC is made once, by the head of the trace, and travels unchanged (``sentry-*``
entries of the ``baggage`` header); every envelope of the trace carries it in its header (``trace``).

The hook between the pieces (documented in the README, "Trace interop"):

- ``SentryPropagator.extract`` puts an :class:`Incoming` (the upstream's ``sentry-*`` baggage entries, and
  whether the upstream deferred its sampling decision) into the OTel context under :data:`INCOMING_KEY`;
- the Sentry leg's span processor copies it, on ``on_start``, onto the local root span (attribute
  :data:`INCOMING_ATTR`) and points every local child at its local root (:data:`ROOT_ATTR`), so the DSC
  can be found from any span of the trace, on any thread, after the request's context is gone;
- the first one to need the DSC (an outgoing request's ``baggage``, or the first envelope) computes it
  with :func:`trace_dsc` and freezes it on the local root (:data:`FROZEN_ATTR`); later uses reuse it, so
  what went downstream and what Sentry receives agree, even if the transaction is renamed afterwards.

Without the bridge's span processor (the ``sentry`` traces exporter under another configurator) the
incoming DSC still reaches outgoing requests through the context, but envelopes use this service's DSC.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol
from urllib.parse import quote, unquote

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan

from bridge.sample_rand import sample_rand, stated_rate, valid_sample_rand

__all__ = [
    "INCOMING_KEY",
    "INCOMING_ATTR",
    "ROOT_ATTR",
    "FROZEN_ATTR",
    "SENTRY_PREFIX",
    "Incoming",
    "DscHead",
    "incoming_from",
    "set_head",
    "clear_head",
    "current_head",
    "trace_dsc",
    "dsc_for_span",
    "local_root",
    "remember",
    "sentry_items",
    "merge_baggage",
]

INCOMING_KEY = context_api.create_key("otel-sentry-bridge.incoming-dsc")
INCOMING_ATTR = "_bridge_incoming_dsc"
ROOT_ATTR = "_bridge_local_root"
FROZEN_ATTR = "_bridge_dsc"
SENTRY_PREFIX = "sentry-"


@dataclass(frozen=True)
class Incoming:
    """What an upstream Sentry SDK said about the trace.

    ``items``: its DSC (``sentry-*`` baggage entries, prefix removed, values decoded), empty when it sent
    none; ``deferred``: its ``sentry-trace`` had no sampled flag, so this service makes the decision.
    """

    items: Mapping[str, str]
    deferred: bool = False

    @property
    def sample_rand(self) -> Optional[float]:
        return valid_sample_rand(self.items.get("sample_rand"))

    def dsc(self, trace_id: int, sampled: bool, rate: Optional[float]) -> dict[str, str]:
        """The frozen DSC, completed where the upstream left something to this service."""
        dsc = dict(self.items)
        dsc.setdefault("trace_id", f"{trace_id:032x}")
        if self.deferred:  # our decision, so our rate (as Sentry's SDKs do)
            if rate is not None:
                dsc["sample_rate"] = repr(stated_rate(sampled, rate))
            dsc["sampled"] = "true" if sampled else "false"
        if valid_sample_rand(dsc.get("sample_rand")) is None:
            dsc["sample_rand"] = sample_rand(trace_id, sampled, _rate(dsc.get("sample_rate")))
        return dsc


def _rate(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def incoming_from(context: Optional[context_api.Context]) -> Optional[Incoming]:
    value = context_api.get_value(INCOMING_KEY, context)
    return value if isinstance(value, Incoming) else None


class DscHead(Protocol):
    """Who states this service's own DSC (the Sentry leg): its rate, and the DSC of a trace it heads."""

    @property
    def sample_rate(self) -> float: ...

    def head_dsc(self, trace_id: int, sampled: bool, root: Optional[Any]) -> dict[str, str]:
        """``root``: the local root span, or ``(transaction name, source)``, or None."""
        ...


_head_lock = threading.Lock()
_head: Optional[DscHead] = None


def set_head(head: DscHead) -> None:
    """Make ``head`` the one that states this process's DSC (the latest Sentry leg)."""
    global _head
    with _head_lock:
        _head = head


def clear_head(head: DscHead) -> None:
    global _head
    with _head_lock:
        if _head is head:
            _head = None


def current_head() -> Optional[DscHead]:
    return _head


def trace_dsc(
    trace_id: int, sampled: bool, incoming: Optional[Incoming], head: Optional[DscHead], root: Optional[Any] = None
) -> Optional[dict[str, str]]:
    """The DSC of a trace: the upstream's when it sent one, else the head's; None when neither exists."""
    rate = head.sample_rate if head is not None else None
    if incoming is not None and incoming.items:
        return incoming.dsc(trace_id, sampled, rate)
    if head is None:
        return None
    return head.head_dsc(trace_id, sampled, root)


def remember(span: Any, parent_context: Optional[context_api.Context]) -> None:
    """On a span's start: point a local child at its local root; give a local root the incoming DSC."""
    parent = trace_api.get_current_span(parent_context)
    parent_context_of_span = parent.get_span_context()
    try:
        if parent_context_of_span.is_valid and not parent_context_of_span.is_remote:
            root = local_root(parent)
            if root is not None:
                setattr(span, ROOT_ATTR, root)
            return
        incoming = incoming_from(parent_context)
        if incoming is not None:
            setattr(span, INCOMING_ATTR, incoming)
    except AttributeError:  # a span type that takes no attributes
        pass


def local_root(span: Any) -> Optional[Any]:
    """The local root of an SDK span: recorded by the Sentry leg's processor, or the span itself."""
    root = getattr(span, ROOT_ATTR, None)
    if root is not None:
        return root
    if not isinstance(span, ReadableSpan):  # e.g. a NonRecordingSpan: no parent to look at
        return None
    parent = span.parent
    return span if parent is None or parent.is_remote else None


def dsc_for_span(
    span: Any,
    context: Optional[context_api.Context] = None,
    head: Optional[DscHead] = None,
    root: Optional[Any] = None,
) -> Optional[dict[str, str]]:
    """The DSC for anything sent under ``span`` (frozen on its local root on first use).

    ``context`` is where to look for an incoming DSC when no span carries one; ``head`` states this
    service's DSC (default: the latest Sentry leg); ``root`` names the transaction when ``span`` has no
    local root to name it (an unsampled request: ``(name, source)``).
    """
    span_context = span.get_span_context()
    sampled = span_context.trace_flags.sampled
    head = head if head is not None else current_head()
    local = local_root(span)
    if local is None:
        incoming = getattr(span, INCOMING_ATTR, None) or incoming_from(context)
        return trace_dsc(span_context.trace_id, sampled, incoming, head, root)
    root = local
    frozen: Optional[dict[str, str]] = getattr(root, FROZEN_ATTR, None)
    if frozen is not None:
        return frozen
    incoming = getattr(root, INCOMING_ATTR, None) or incoming_from(context)
    dsc = trace_dsc(span_context.trace_id, sampled, incoming, head, root)
    if dsc is not None:
        try:
            setattr(root, FROZEN_ATTR, dsc)
        except AttributeError:
            pass
    return dsc


# -- baggage ------------------------------------------------------------------------------------------
def _members(header: str) -> list[str]:
    return [member.strip() for member in header.split(",") if member.strip()]


def sentry_items(header: str) -> dict[str, str]:
    """The ``sentry-*`` entries of a ``baggage`` header: prefix removed, values percent-decoded."""
    items: dict[str, str] = {}
    for member in _members(header):
        key, sep, value = member.partition("=")
        key = key.strip()
        if sep and key.startswith(SENTRY_PREFIX) and len(key) > len(SENTRY_PREFIX):
            value = value.split(";", 1)[0].strip()  # W3C properties are not part of the value
            items[unquote(key[len(SENTRY_PREFIX) :])] = unquote(value)
    return items


def merge_baggage(existing: Optional[str], dsc: Mapping[str, str]) -> str:
    """``existing`` without its ``sentry-*`` entries, then ``dsc`` as ``sentry-*`` entries (others are kept)."""
    kept = [m for m in _members(existing or "") if not m.partition("=")[0].strip().startswith(SENTRY_PREFIX)]
    ours = [f"{SENTRY_PREFIX}{quote(key, safe='')}={quote(str(value), safe='')}" for key, value in dsc.items()]
    return ",".join(kept + ours)


def current_span_dsc(context: Optional[context_api.Context] = None) -> Optional[dict[str, str]]:
    """The DSC for the span current in ``context`` (the current context by default)."""
    span = trace_api.get_current_span(context)
    if not span.get_span_context().is_valid:
        return None
    return dsc_for_span(span, context)
