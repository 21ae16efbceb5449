"""Errors and messages, from the app (``capture_exception``, ``capture_message``) and from the integrations
(logging, uncaught exceptions, threads, framework 500s): recorded on the current span for OTLP where that
is the app's own call, and handed to the Sentry leg at once with the data of their scopes.

sentry-sdk's signatures: ``capture_exception(error=None, **scope_kwargs)``,
``capture_message(message, level=None, **scope_kwargs)`` with ``tags``, ``extras``, ``contexts``, ``user``,
``level``, ``fingerprint``; ``last_event_id()``. One exception object is reported once (``dedupe``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from types import FrameType, TracebackType
from typing import Any, Optional

from opentelemetry import trace as trace_api

from bridge import scopes, setup
from bridge.integrations import dedupe
from bridge.sentry import frames, local_variables
from bridge.sentry.capture import Moment
from bridge.sentry.context import event_id as new_event_id  # no os.urandom: see there
from bridge.sentry.errors import exception_event, message_event

__all__ = ["capture_exception", "capture_message", "capture_event", "last_event_id", "record_exception"]

logger = logging.getLogger(__name__)

ExcInfo = tuple[Optional[type], Optional[BaseException], Optional[TracebackType]]


def _request() -> Any:
    return scopes.request_var.get()


def _leg(request: Any) -> Any:
    bridge = request.bridge if request is not None else setup.active()
    if bridge is None or not bridge.enabled:
        return None
    return bridge.sentry


def _span(request: Any) -> trace_api.Span:
    span = trace_api.get_current_span()
    if not span.get_span_context().is_valid and request is not None:
        span = request.span  # the request's context is not attached (a framework hook, say)
    return span


def _moment(request: Any, span: trace_api.Span, root_attributes: Optional[Mapping[str, Any]] = None) -> Moment:
    fallback = scopes.get_isolation_scope().trace()
    if request is not None and span.get_span_context().trace_id == request.span.get_span_context().trace_id:
        return Moment(span, request.span, request.attributes, fallback)
    return Moment(span, None, root_attributes, fallback)


def capture_event(
    *,
    exc: Optional[BaseException] = None,
    message: Optional[str] = None,
    level: Optional[str] = None,
    handled: bool = True,
    mechanism: Optional[str] = None,
    fields: Optional[Mapping[str, Any]] = None,
    scope_kwargs: Optional[Mapping[str, Any]] = None,
    span: Optional[trace_api.Span] = None,
    record_on_span: bool = False,
    event_id: Optional[str] = None,
    request: Any = None,
    stack: Optional[list[tuple[FrameType, Optional[int]]]] = None,
    root_attributes: Optional[Mapping[str, Any]] = None,
) -> Optional[str]:
    """Send one error (``exc``) or message event now; returns its id, or None when nothing is sent.

    ``mechanism``: ``logging``, ``excepthook``, ``threading``, ``celery``... (default ``generic`` when
    handled). ``fields``: top-level event fields set as given (``logger``, ``logentry``, ``extra``).
    ``record_on_span``: also an ``exception`` / ``sentry.message`` event on the current span (for OTLP).
    ``request``: the ``RequestScope`` when it is no longer current (the middleware, after the app returned).
    ``stack``: the calling thread's stack (``frames.current_stack()``), sent as the current thread's
    ``threads`` entry (a log record with ``stack_info``, or ``exc_info=True`` outside any ``except``).
    ``root_attributes``: what the caller knows of the work ``span`` belongs to when that span records
    nothing (an unsampled Celery run: its task name, id and queue), for the event's transaction name and
    contexts. Never raises.
    """
    try:
        if exc is not None and dedupe.seen(exc):
            return None
        request = request if request is not None else _request()
        span = span if span is not None else _span(request)
        event_id = event_id or new_event_id()
        text = "" if message is None else str(message)
        chosen = scopes.LEVELS[3] if level is None else str(level)
        if record_on_span and span.is_recording():
            if exc is not None:
                _record_on_span(request, span, exc, event_id, handled)
            else:
                attributes = {"sentry.message.text": text, "sentry.message.level": chosen, "sentry.event_id": event_id}
                span.add_event("sentry.message", attributes)
        if exc is not None:
            dedupe.remember(exc, event_id)
        leg = _leg(request)
        if leg is None:
            return event_id if record_on_span and span.is_recording() else None
        data = scopes.ScopeData(scopes.layers(request), scope_kwargs)
        extra_fields = dict(fields or {})
        traceback = exc.__traceback__ if exc is not None else None  # as now: it grows as exc propagates
        collected = None
        if exc is not None and leg.options.include_local_variables:
            collected = local_variables.collect(exc, traceback, leg.options.send_default_pii)

        def build(common: dict[str, Any]) -> dict[str, Any]:
            if exc is not None:
                event = exception_event(exc, handled=handled, traceback=traceback, mechanism_type=mechanism, **common)
                if collected is not None:
                    local_variables.add_local_variables(event, collected)
                if level is not None:
                    event["level"] = chosen
            else:
                event = message_event(text, chosen, **common)
            if stack:
                trace = frames.frames_from_stack(stack, common["options"])
                if trace is not None:
                    event["threads"] = {"values": [{"stacktrace": trace, "crashed": False, "current": True}]}
            event.update(extra_fields)
            return event

        environ = request.environ if request is not None else None
        moment = _moment(request, span, root_attributes)
        sent = str(leg.capturer.capture(build, moment, event_id=event_id, exc=exc, environ=environ, finish=data.apply))
        (scopes.layers(request)[0]).last_event_id = sent
        return sent
    except Exception:
        logger.warning("otel-sentry-bridge: could not capture an event", exc_info=True)
        return None


def record_exception(
    request: Any,
    span: trace_api.Span,
    exc: BaseException,
    *,
    handled: bool,
    root_attributes: Optional[Mapping[str, Any]] = None,
) -> Optional[str]:
    """An exception the request failed with (or a handled one): on ``span`` for OTLP, and to Sentry once.
    ``root_attributes``: as ``capture_event``'s."""
    previous = dedupe.event_id_of(exc) if dedupe.seen(exc) else None
    if previous is not None:  # reported already (a log record, capture_exception): the span still records it
        if span.is_recording():
            _record_on_span(request, span, exc, previous, handled)
            leg = _leg(request)
            if leg is not None:
                leg.capturer.note_sent(previous, span)
        return previous
    return capture_event(
        exc=exc, handled=handled, span=span, record_on_span=True, request=request, root_attributes=root_attributes
    )


def _record_on_span(request: Any, span: trace_api.Span, exc: BaseException, event_id: str, handled: bool) -> None:
    """``exc`` on ``span`` for OTLP: an ``exception`` span event, a log record, or both, as
    ``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`` says (bridge.logs). Sentry gets it from the caller either way."""
    bridge = request.bridge if request is not None else setup.active()
    as_span_event = True
    if bridge is not None and getattr(bridge, "logs", None) is not None:  # bridge.logs is loaded with its leg
        from bridge.logs import emit_exception

        as_span_event = emit_exception(bridge, span, exc)
    if as_span_event and span.is_recording():
        span.add_event("exception", _exception_attributes(exc, event_id, escaped=not handled))


def _exception_attributes(exc: BaseException, event_id: str, *, escaped: bool) -> dict[str, Any]:
    """What the SDK's ``Span.record_exception`` records, the same text, without its ``os.stat`` per file.

    ``traceback.format_exception`` calls ``linecache.checkcache`` on every file of every traceback: one
    ``stat`` each, each releasing the GIL and retaking it at once, which restarts the waiting threads' 5 ms
    switch interval; a process that fails many requests starves its export threads that way. Here the
    frames are listed without that check and their lines read lazily through ``linecache`` (cached after
    the first read, as the Sentry leg's source context is): the same text unless a file changed on disk."""
    return {
        "exception.type": _type_name(exc),
        "exception.message": str(exc),
        "exception.stacktrace": format_exception(exc),
        "exception.escaped": str(escaped),
        "sentry.event_id": event_id,
    }


def _type_name(exc: BaseException) -> str:
    module, qualname = type(exc).__module__, type(exc).__qualname__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def format_exception(exc: BaseException) -> str:
    """``"".join(traceback.format_exception(exc))`` without a ``stat`` per file (see above)."""
    walk = getattr(traceback, "_walk_tb_with_full_positions", None)
    if walk is None:  # an interpreter without it (not CPython 3.11+): the standard library's way
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # limit=0: the chain of exceptions, no frames (so no checkcache); then each one's frames, unchecked.
    summary = traceback.TracebackException(type(exc), exc, exc.__traceback__, limit=0, compact=True)
    pending: list[tuple[Any, Optional[BaseException]]] = [(summary, exc)]
    seen: set[int] = set()
    while pending:
        node, error = pending.pop()
        if node is None or error is None or id(node) in seen:
            continue
        seen.add(id(node))
        node.stack = traceback.StackSummary.from_list(
            [
                traceback.FrameSummary(
                    frame.f_code.co_filename,
                    lineno,
                    frame.f_code.co_name,
                    lookup_line=False,
                    end_lineno=end_lineno,
                    colno=colno,
                    end_colno=end_colno,
                )  # fmt: skip
                for frame, (lineno, end_lineno, colno, end_colno) in walk(error.__traceback__)
            ]
        )
        pending += [(node.__cause__, error.__cause__), (node.__context__, error.__context__)]
        pending += list(zip(getattr(node, "exceptions", None) or (), getattr(error, "exceptions", ())))
    return "".join(summary.format())


def _exception_from(error: Any) -> Optional[BaseException]:
    if error is None:
        return sys.exc_info()[1]
    if isinstance(error, BaseException):
        return error
    if isinstance(error, tuple) and len(error) == 3 and isinstance(error[1], BaseException):
        return error[1]
    return None


def capture_exception(error: Any = None, **scope_kwargs: Any) -> Optional[str]:
    """Report a handled exception (default: the one being handled); returns its event id (None if not sent).

    ``error``: an exception or an ``exc_info`` tuple. ``scope_kwargs``: ``tags``, ``extras``, ``contexts``,
    ``user``, ``level``, ``fingerprint`` for this event only.
    """
    try:
        _check(scope_kwargs)
        exc = _exception_from(error)
        if exc is None:
            return None
        return capture_event(exc=exc, scope_kwargs=scope_kwargs, record_on_span=True)
    except Exception:
        logger.warning("otel-sentry-bridge: capture_exception failed", exc_info=True)
        return None


def capture_message(message: str, level: Optional[str] = None, **scope_kwargs: Any) -> Optional[str]:
    """Send a message event (level ``info`` by default); returns its event id."""
    try:
        _check(scope_kwargs)
        return capture_event(message=message, level=level, scope_kwargs=scope_kwargs, record_on_span=True)
    except Exception:
        logger.warning("otel-sentry-bridge: capture_message failed", exc_info=True)
        return None


def _check(scope_kwargs: dict[str, Any]) -> None:
    unknown = set(scope_kwargs) - set(scopes.SCOPE_KWARGS)
    if unknown:
        logger.warning(
            "otel-sentry-bridge: unknown scope keyword(s) %s ignored; known: %s",
            ", ".join(sorted(unknown)),
            ", ".join(scopes.SCOPE_KWARGS),
        )
        for key in unknown:
            del scope_kwargs[key]


def last_event_id() -> Optional[str]:
    """The id of the last error or message event sent from this isolation scope (request or process)."""
    return scopes.get_isolation_scope().last_event_id
