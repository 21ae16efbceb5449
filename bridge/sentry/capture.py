"""Errors and messages captured in this process leave for Sentry at once, not when their span ends.

``capture_exception``, ``capture_message``, framework-recorded 500s, exceptions that escape the app, log
records and uncaught exceptions all come through :meth:`Capturer.capture`: on the calling thread it notes
what only that moment knows (the current span and its trace, the request's name as known now, the request's
headers, the DSC), and queues the event; the event itself (frames, source context, scope data) is built on
the transport's worker. A ten-minute streaming response no longer holds its errors back, and a worker killed
mid-request has already sent them. The span still records the exception (with its ``sentry.event_id``) for
OTLP; when the span ends the Sentry leg skips the span events whose id this capturer sent.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from bridge import tracebook
from bridge.sentry import naming
from bridge.sentry.context import plain
from bridge.sentry.envelope import Envelope

if TYPE_CHECKING:
    from bridge.sentry.leg import SentryLeg

__all__ = ["Capturer", "Moment", "request_headers", "EventBuilder", "EventFinisher"]

logger = logging.getLogger(__name__)

# (common fields) -> event: the exception or message part, built on the worker.
EventBuilder = Callable[[dict[str, Any]], dict[str, Any]]
# event -> None: what the caller adds last (scope data), on the worker, before before_send.
EventFinisher = Callable[[dict[str, Any]], None]

_ids = RandomIdGenerator()


def request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers from a WSGI environ, named as sent (``User-Agent``)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key
        else:
            continue
        headers[name.replace("_", "-").title()] = str(value)
    return headers


def _source(attributes: Mapping[str, Any]) -> str:
    if attributes.get("sentry.transaction_source"):
        return str(attributes["sentry.transaction_source"])
    return "route" if attributes.get("http.route") else "url"


def request_name(attributes: Mapping[str, Any]) -> Optional[str]:
    method = attributes.get("http.request.method") or attributes.get("http.method")
    target = attributes.get("http.route") or attributes.get("url.path")
    if method and target:
        return f"{method} {target}"
    return None


class Moment:
    """What an event takes from the moment it is captured: span ids, the transaction's name, the request."""

    __slots__ = ("span", "trace_id", "span_id", "parent_span_id", "op", "transaction", "source", "attributes")

    def __init__(
        self,
        span: trace_api.Span,
        root: Optional[trace_api.Span],
        root_attributes: Optional[Mapping[str, Any]],
        fallback: Optional[trace_api.SpanContext] = None,
    ) -> None:
        context = span.get_span_context()
        if not context.is_valid:
            # Outside any span: the scope's own trace (sentry-sdk's propagation context), else a fresh one.
            context = fallback or trace_api.SpanContext(
                _ids.generate_trace_id(), _ids.generate_span_id(), is_remote=False
            )
            span = trace_api.NonRecordingSpan(context)
            root = None
        self.span = span
        self.trace_id = context.trace_id
        self.span_id = context.span_id
        parent = getattr(span, "parent", None)
        self.parent_span_id: Optional[int] = getattr(parent, "span_id", None) if parent is not None else None
        if root is None:
            root = _local_root(span)
        attributes: dict[str, Any] = {}
        if root_attributes is not None:
            attributes = dict(root_attributes)
        elif root is not None:
            attributes = plain(getattr(root, "attributes", None))
        self.attributes = attributes
        self.op: Optional[str] = None
        if root is not None and span is not root and span.is_recording():
            self.op = naming.op_for(plain(getattr(span, "attributes", None)), getattr(span, "kind", None))
        name = getattr(root, "name", None) if root is not None and root.is_recording() else None
        self.transaction: Optional[str]
        if isinstance(name, str):
            self.transaction, self.source = naming.name_for(attributes, name)
        else:
            self.transaction, self.source = request_name(attributes), _source(attributes)
            if self.transaction is None and attributes:  # what the caller said of a non-recording root (a task)
                named, source = naming.name_for(attributes, "")
                if source != "custom":
                    self.transaction, self.source = named, source


def _local_root(span: trace_api.Span) -> Optional[trace_api.Span]:
    state = getattr(span, tracebook.STATE_ATTR, None)
    if state is not None and state.root is not None:
        return state.root  # type: ignore[no-any-return]
    parent = getattr(span, "parent", None)
    if parent is None or getattr(parent, "is_remote", False):
        return span if span.is_recording() else None
    return None


SENT_IDS_KEPT = 100_000  # event ids sent at capture, remembered until their span ends (about 4 MB at most)


class Capturer:
    """The leg's in-process error path (one per leg)."""

    def __init__(self, leg: SentryLeg) -> None:
        self.leg = leg
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """A lock held by another thread at fork() time would never be released in the child."""
        self._lock = threading.Lock()
        self._sent.clear()

    def already_sent(self, event_id: str) -> bool:
        """Whether the event a span event names (``sentry.event_id``) left at its capture; forgets it."""
        if not self._sent:
            return False
        with self._lock:
            return self._sent.pop(event_id, 0) is None

    def note_sent(self, event_id: str, span: trace_api.Span) -> None:
        """``span`` records an event that already left (under ``event_id``): its end must not send it."""
        if not span.is_recording():
            return  # no span end will ever ask
        with self._lock:
            self._sent[event_id] = None
            if len(self._sent) > SENT_IDS_KEPT:
                self._sent.popitem(last=False)

    def capture(
        self,
        build: EventBuilder,
        moment: Moment,
        *,
        event_id: str,
        exc: Optional[BaseException] = None,
        environ: Optional[Mapping[str, Any]] = None,
        finish: Optional[EventFinisher] = None,
    ) -> str:
        """Queue one event now; returns its id. ``build`` makes the exception or message part on the worker."""
        leg = self.leg
        named = (moment.transaction, moment.source)
        dsc = tracebook.dsc_for_span(moment.span, context_api.get_current(), head=leg, root=named)
        headers = request_headers(environ) if environ is not None else None
        traceback = exc.__traceback__ if exc is not None else None  # as it is now: it grows as exc propagates

        def make() -> Optional[Envelope]:
            event = build(
                {
                    "trace_id": moment.trace_id,
                    "span_id": moment.span_id,
                    "parent_span_id": moment.parent_span_id,
                    "transaction": moment.transaction,
                    "attributes": moment.attributes,
                    "resource": leg.resource.attributes,
                    "options": leg.convert_options,
                }
            )
            event["event_id"] = event_id
            if moment.op:
                event["contexts"]["trace"]["op"] = moment.op
            if finish is not None:
                try:
                    finish(event)
                except Exception:
                    logger.warning("otel-sentry-bridge: could not add the scope to an event", exc_info=True)
            return leg.finish_event(event, exc, dsc, headers, traceback)

        self.note_sent(event_id, moment.span)
        leg.transport.submit("error", make)
        return event_id
