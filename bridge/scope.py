"""The per-request scope: tags, user, handled errors and messages for the request being served.

The middleware opens a :class:`RequestScope` for each request and makes it current (a ContextVar, so
concurrent requests in threads never see each other's values). Tags and user go onto the request's
server span as attributes (``sentry.tag.<key>``, ``enduser.id``, ``user.email``, ``user.name``) so both
backends see them; handled errors become ``exception`` events on the current span. When the trace is not
sampled the span records nothing, and errors and messages go straight to the Sentry leg instead, still
carrying the trace id.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from bridge.sentry.context import event_id as new_event_id  # no os.urandom: see there

if TYPE_CHECKING:
    from bridge.setup import Bridge

__all__ = [
    "RequestScope",
    "current_scope",
    "set_tag",
    "set_user",
    "set_route",
    "fail_request",
    "capture_exception",
    "capture_message",
]

logger = logging.getLogger(__name__)

TAG_PREFIX = "sentry.tag."
MAX_TAG_LENGTH = 200
_LEVELS = ("debug", "info", "warning", "error", "fatal")
_USER_ATTRIBUTES = {"id": "enduser.id", "email": "user.email", "username": "user.name"}


class RequestScope:
    """What the bridge knows of one request; made current by the middleware."""

    __slots__ = ("bridge", "span", "attributes", "tags", "user", "failures", "environ")

    def __init__(
        self,
        bridge: Bridge,
        span: trace_api.Span,
        attributes: dict[str, Any],
        environ: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.bridge = bridge
        self.environ = environ  # read only when an error or message is recorded (its request headers)
        self.span = span
        self.attributes = attributes  # the request's span attributes (kept for unsampled errors)
        self.tags: dict[str, str] = {}
        self.user: dict[str, str] = {}
        self.failures: list[BaseException] = []  # exceptions already recorded as this request's failure

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value
        if self.span.is_recording():
            self.span.set_attribute(key, value)

    def set_route(self, route: str) -> None:
        """Name the request after its route template: ``http.route``, span ``"{METHOD} {route}"``, source route."""
        method = self.attributes.get("http.request.method") or self.attributes.get("http.method")
        method = "HTTP" if not method or method == "_OTHER" else str(method)
        self.set_attribute("http.route", route)
        self.set_attribute("sentry.transaction_source", "route")
        if self.span.is_recording():
            self.span.update_name(f"{method} {route}")

    def fail(self, exc: BaseException) -> bool:
        """The request failed with ``exc``: ``error.type``, ERROR status and an unhandled exception event.

        Once per exception object: a framework that records the exception it turns into a 500 and then
        lets it propagate (Flask in testing mode, for one) does not get it recorded twice. Returns whether
        it was recorded now.
        """
        if any(seen is exc for seen in self.failures):
            return False
        self.failures.append(exc)
        self.mark_failed()
        record_exception(self, self.span, exc, handled=False)
        return True

    def mark_failed(self) -> None:
        """(Re)apply the latest failure's ``error.type`` and ERROR status; the response's own attributes
        (``error.type = "500"``, a status without description) would otherwise replace them."""
        if not self.failures:
            return
        exc = self.failures[-1]
        name = type(exc).__qualname__
        self.set_attribute("error.type", name)
        if self.span.is_recording():
            self.span.set_status(Status(StatusCode.ERROR, f"{name}: {exc}"))


_current: ContextVar[Optional[RequestScope]] = ContextVar("otel_sentry_bridge_request", default=None)

# Live exception objects recorded on spans, for the Sentry leg (exact frames, before_send's exc_info).
# The SDK hands span processors a snapshot of the span, so they travel here, keyed by span id, until the
# leg takes them when the span ends. Bounded: spans that never end cannot pile exceptions up.
_LIVE_LIMIT = 1000
LiveException = tuple[BaseException, Optional[TracebackType]]  # the traceback as it was when recorded
_live: OrderedDict[int, dict[str, LiveException]] = OrderedDict()
_live_lock = threading.Lock()


def _keep_live(span_id: int, event_id: str, exc: BaseException) -> None:
    """Keep ``exc`` and its traceback as it is now (it grows as the exception propagates further)."""
    with _live_lock:
        kept = _live.get(span_id)
        if kept is None:
            kept = _live[span_id] = {}
            if len(_live) > _LIVE_LIMIT:
                _live.popitem(last=False)
        kept[event_id] = (exc, exc.__traceback__)


# The request headers of spans that recorded an error or a message, for the Sentry event's ``request``
# (sentry-sdk shows them; OTLP gets only the headers its capture lists name). Read from the environ at
# the error, never on the request's hot path; same bound as the live exceptions.
_headers: OrderedDict[int, dict[str, str]] = OrderedDict()


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


def _keep_headers(span_id: int, scope: Optional[RequestScope]) -> None:
    if scope is None or scope.environ is None:
        return
    with _live_lock:
        if span_id in _headers:
            return
        _headers[span_id] = request_headers(scope.environ)
        if len(_headers) > _LIVE_LIMIT:
            _headers.popitem(last=False)


def take_request_headers(span_id: int) -> Optional[dict[str, str]]:
    """The request headers kept for span ``span_id`` when it recorded an error, removed from the registry."""
    if not _headers:
        return None
    with _live_lock:
        return _headers.pop(span_id, None)


def take_live_exceptions(span_id: int) -> dict[str, LiveException]:
    """The live exceptions recorded on span ``span_id`` (by Sentry event id), removed from the registry."""
    if not _live:
        return {}
    with _live_lock:
        return _live.pop(span_id, None) or {}


def current_scope() -> Optional[RequestScope]:
    return _current.get()


def set_tag(key: str, value: object) -> None:
    """Tag the current request (a Sentry tag and a span attribute ``sentry.tag.<key>``)."""
    scope = _current.get()
    if scope is None:
        logger.debug("set_tag(%r) outside a request is ignored", key)
        return
    text = str(value)[:MAX_TAG_LENGTH]
    name = str(key)[:MAX_TAG_LENGTH]
    scope.tags[name] = text
    scope.set_attribute(TAG_PREFIX + name, text)


def set_user(user: Optional[Mapping[str, Any]]) -> None:
    """Set the user of the current request: keys ``id``, ``email``, ``username`` (others are ignored)."""
    scope = _current.get()
    if scope is None:
        logger.debug("set_user() outside a request is ignored")
        return
    for key, attribute in _USER_ATTRIBUTES.items():
        value = (user or {}).get(key)
        if value is not None:
            scope.user[key] = str(value)
            scope.set_attribute(attribute, str(value))


def set_route(route: str) -> None:
    """Name the current request after its route template (``/users/{id}``); for framework helpers."""
    try:
        scope = _current.get()
        if scope is not None and route:
            scope.set_route(route)
    except Exception:
        logger.warning("otel-sentry-bridge: set_route failed", exc_info=True)


def fail_request(exc: BaseException) -> None:
    """Record ``exc`` as the failure of the current request, for an exception its framework turned into a 500."""
    try:
        scope = _current.get()
        if scope is not None:
            scope.fail(exc)
    except Exception:
        logger.warning("otel-sentry-bridge: fail_request failed", exc_info=True)


def record_exception(
    scope: Optional[RequestScope], span: trace_api.Span, exc: BaseException, *, handled: bool
) -> Optional[str]:
    """Record ``exc`` on ``span`` (or send it directly when unsampled); returns the Sentry event id."""
    event_id = new_event_id()
    bridge = scope.bridge if scope is not None else _active_bridge()
    # OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN (bridge.logs): a log record, a span event, or both. Without the
    # span event, Sentry takes the live exception directly (same frames), still in the span's trace.
    as_span_event = True
    if bridge is not None and getattr(bridge, "logs", None) is not None:  # bridge.logs is loaded with its leg
        from bridge.logs import emit_exception

        as_span_event = emit_exception(bridge, span, exc)
    if span.is_recording() and as_span_event:
        span.record_exception(exc, attributes={"sentry.event_id": event_id}, escaped=not handled)
        if bridge is not None and bridge.sentry is not None:
            span_id = span.get_span_context().span_id
            _keep_live(span_id, event_id, exc)
            _keep_headers(span_id, scope)
        return event_id
    if bridge is None or bridge.sentry is None:
        return None
    return str(
        bridge.sentry.capture_unsampled_exception(
            exc, exc.__traceback__, span.get_span_context(), scope, handled, event_id
        )
    )


def capture_exception(exc: Optional[BaseException] = None) -> Optional[str]:
    """Report a handled exception (default: the one being handled) on the current span; returns its event id."""
    try:
        if exc is None:
            exc = sys.exc_info()[1]
            if exc is None:
                return None
        scope = _current.get()
        span = trace_api.get_current_span()
        if not span.get_span_context().is_valid and scope is not None:
            span = scope.span
        return record_exception(scope, span, exc, handled=True)
    except Exception:
        logger.warning("otel-sentry-bridge: capture_exception failed", exc_info=True)
        return None


def capture_message(text: str, level: str = "info") -> Optional[str]:
    """Send a message event for the current request (a ``sentry.message`` span event); returns its event id."""
    try:
        level = level if level in _LEVELS else "info"
        event_id = new_event_id()
        scope = _current.get()
        span = trace_api.get_current_span()
        if not span.get_span_context().is_valid and scope is not None:
            span = scope.span
        if span.is_recording():
            span.add_event(
                "sentry.message",
                {"sentry.message.text": str(text), "sentry.message.level": level, "sentry.event_id": event_id},
            )
            if scope is not None and scope.bridge.sentry is not None:
                _keep_headers(span.get_span_context().span_id, scope)
            return event_id
        bridge = scope.bridge if scope is not None else _active_bridge()
        if bridge is None or bridge.sentry is None:
            return None
        return str(bridge.sentry.capture_unsampled_message(str(text), level, span.get_span_context(), scope, event_id))
    except Exception:
        logger.warning("otel-sentry-bridge: capture_message failed", exc_info=True)
        return None


def _active_bridge() -> Optional[Bridge]:
    from bridge import setup

    return setup.active()
