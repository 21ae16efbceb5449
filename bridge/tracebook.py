"""Where each span's trace keeps its DSC, from the span's start to the envelope that carries it.

The hook between the propagator, outgoing requests and the Sentry leg (README, "Trace interop"):

- ``SentryPropagator.extract`` leaves the upstream's DSC in the OTel context (``bridge.dsc.INCOMING_KEY``);
  the context is gone by the time envelopes are built, on another thread;
- so the Sentry leg's span processor calls :func:`remember` on ``on_start``: a local root gets a
  :class:`TraceState` (the incoming DSC, and the root itself, which names the transaction), and every
  local child shares its parent's. The state rides on the live span (:data:`STATE_ATTR`), and in a
  bounded book keyed by span id, because the SDK hands ``on_end`` a *copy* of the span:
  :func:`handover` moves the state onto that copy;
- the first one to need the DSC (an outgoing request's ``baggage``, or the first envelope) makes it with
  ``bridge.dsc.trace_dsc`` and freezes it in the state; everything after reuses it, so what went
  downstream and what Sentry receives agree even if the transaction is renamed afterwards;
- lazily: a local root with no incoming DSC (most requests) that ``on_end`` will see is only marked
  (:data:`LAZY_ATTR`) when it starts; its state is made when it is first needed: a child starts, or
  the DSC is asked for while the root is live. A root that ends without either never had anything to
  share: its finished copy has no state, and the DSC made from it is the one the state would have
  frozen (same trace, same name). This saves the state and two book operations on every plain request
  (~5 us).

Without the processor (the ``sentry`` exporter under another configurator) there is no state: outgoing
requests still find the incoming DSC in the current context, but envelopes state this service's DSC.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan

from bridge.dsc import DscHead, Incoming, current_head, incoming_from, trace_dsc

__all__ = [
    "STATE_ATTR",
    "LAZY_ATTR",
    "TraceState",
    "remember",
    "handover",
    "dsc_for_span",
    "current_span_dsc",
    "MAX_LIVE_SPANS",
]

STATE_ATTR = "_bridge_trace_state"
LAZY_ATTR = "_bridge_lazy_root"  # marks a (tracked) local root whose state is made on first need
MAX_LIVE_SPANS = 100_000  # spans started and not yet ended that the book follows; the oldest are forgotten


class TraceState:
    """One local trace (a local root and its descendants)."""

    __slots__ = ("incoming", "root", "frozen")

    def __init__(self, incoming: Optional[Incoming], root: Any, frozen: Optional[dict[str, str]] = None) -> None:
        self.incoming = incoming
        self.root = root  # the live local root span: it names the transaction when the DSC is made
        self.frozen = frozen


_lock = threading.Lock()
_book: OrderedDict[tuple[int, int], TraceState] = OrderedDict()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork() time would never be released
    _book.clear()


os.register_at_fork(after_in_child=_after_fork)


def _key(span: Any) -> tuple[int, int]:
    context = span.get_span_context()
    return context.trace_id, context.span_id


def remember(span: Any, parent_context: Optional[context_api.Context], *, track: bool = True) -> None:
    """On a span's start: share its local parent's state, or mark a local root (its state comes on need).

    ``track=False`` for a span no ``on_end`` will ever see (a non-recording span): no book entry.
    """
    parent = trace_api.get_current_span(parent_context)
    parent_context_of_span = parent.get_span_context()
    state: Optional[TraceState] = None
    if parent_context_of_span.is_valid and not parent_context_of_span.is_remote:
        state = getattr(parent, STATE_ATTR, None) or _adopt(parent)
    if state is None:
        incoming = incoming_from(parent_context)
        if incoming is None and track:  # the common case: nothing to keep until someone needs it
            try:
                setattr(span, LAZY_ATTR, True)
            except AttributeError:  # a span type that takes no attributes
                pass
            return
        state = TraceState(incoming, span if track else None)
    try:
        setattr(span, STATE_ATTR, state)
    except AttributeError:  # a span type that takes no attributes
        return
    if track:
        _enter(span, state)


def _adopt(span: Any) -> Optional[TraceState]:
    """The state of a lazily marked local root, made now (it started with no incoming DSC)."""
    if not getattr(span, LAZY_ATTR, False):
        return None
    state = TraceState(None, span)
    try:
        setattr(span, STATE_ATTR, state)
    except AttributeError:
        return None
    if getattr(span, "end_time", None) is None:  # live: its end hands the state over
        _enter(span, state)
    return state


def _enter(span: Any, state: TraceState) -> None:
    with _lock:
        _book[_key(span)] = state
        while len(_book) > MAX_LIVE_SPANS:
            _book.popitem(last=False)


def handover(finished: Any) -> None:
    """On a span's end: move its state onto the finished copy the SDK passes to ``on_end``."""
    if not _book:
        return
    state = _book.pop(_key(finished), None)  # one atomic operation: no lock needed
    if state is not None:
        try:
            setattr(finished, STATE_ATTR, state)
        except AttributeError:
            pass


def _names_itself(span: Any) -> Optional[Any]:
    """A span with no state is its own local root when its parent is absent or remote."""
    if not isinstance(span, ReadableSpan):
        return None
    parent = span.parent
    return span if parent is None or parent.is_remote else None


def dsc_for_span(
    span: Any,
    context: Optional[context_api.Context] = None,
    head: Optional[DscHead] = None,
    root: Optional[Any] = None,
) -> Optional[dict[str, str]]:
    """The DSC for anything sent under ``span`` (frozen in its trace's state on first use).

    ``context`` is where to look for an incoming DSC when the span has no state; ``head`` states this
    service's DSC (default: the latest Sentry leg); ``root`` names the transaction when nothing else
    does (an unsampled request: ``(name, source)``).
    """
    span_context = span.get_span_context()
    sampled = span_context.trace_flags.sampled
    head = head if head is not None else current_head()
    state: Optional[TraceState] = getattr(span, STATE_ATTR, None) or _adopt(span)
    if state is None:
        namer = _names_itself(span) or root
        return trace_dsc(span_context.trace_id, sampled, incoming_from(context), head, namer)
    if state.frozen is None:
        # The decision is the trace's: the local root's flags, which every local span shares.
        state.frozen = trace_dsc(span_context.trace_id, sampled, state.incoming, head, state.root or root)
    return state.frozen


def current_span_dsc(context: Optional[context_api.Context] = None) -> Optional[dict[str, str]]:
    """The DSC for the span current in ``context`` (the current context by default)."""
    span = trace_api.get_current_span(context)
    if not span.get_span_context().is_valid:
        return None
    return dsc_for_span(span, context)
