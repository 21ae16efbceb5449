"""The per-request scope, and the scope API's top-level setters (sentry-sdk's names).

The middleware opens a :class:`RequestScope` for each request and makes it current (a ContextVar, so
concurrent requests in threads never see each other's values); it holds the request's span and its
isolation scope (``bridge.scopes``). The top-level setters write to the isolation scope here: the request's
inside a request, else the process's. Tags and user also go onto the request's server span as attributes
(``sentry.tag.<key>``, ``enduser.id``, ``user.email``, ``user.name``) so both backends see them; contexts,
extras, level, fingerprint and breadcrumbs are Sentry's only. Errors and messages: ``bridge.capturing``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Optional

from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from bridge import scopes
from bridge.capturing import capture_exception, capture_message, last_event_id, record_exception

if TYPE_CHECKING:
    from bridge.setup import Bridge

__all__ = [
    "RequestScope",
    "current_scope",
    "set_tag",
    "set_tags",
    "set_user",
    "set_context",
    "set_extra",
    "set_level",
    "add_breadcrumb",
    "set_route",
    "fail_request",
    "capture_exception",
    "capture_message",
    "last_event_id",
]

logger = logging.getLogger(__name__)

TAG_PREFIX = "sentry.tag."
MAX_TAG_LENGTH = 200
_USER_ATTRIBUTES = {"id": "enduser.id", "email": "user.email", "username": "user.name"}


class RequestScope:
    """What the bridge knows of one request; made current by the middleware."""

    __slots__ = ("bridge", "span", "attributes", "tags", "user", "failures", "environ", "_isolation")

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
        self._isolation: Optional[scopes.Scope] = None

    @property
    def isolation(self) -> scopes.Scope:
        """The request's own Sentry scope (``bridge.scopes``): a fork of the process scope, made on first use
        (most requests never touch it, and the fork costs a few microseconds). Its breadcrumbs start empty,
        as sentry-sdk's request middlewares clear them: a request's crumbs are its own."""
        if self._isolation is None:
            self._isolation = scopes.process_scope().fork()
            self._isolation.clear_breadcrumbs()
        return self._isolation

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


_current: ContextVar[Optional[RequestScope]] = scopes.request_var


def current_scope() -> Optional[RequestScope]:
    return _current.get()


def set_tag(key: str, value: object) -> None:
    """Tag what follows (a Sentry tag; inside a request also a span attribute ``sentry.tag.<key>``)."""
    try:
        name, text = str(key)[:MAX_TAG_LENGTH], str(value)[:MAX_TAG_LENGTH]
        scopes.get_isolation_scope().set_tag(name, text)
        scope = _current.get()
        if scope is not None:
            scope.tags[name] = text
            scope.set_attribute(TAG_PREFIX + name, text)
    except Exception:
        logger.warning("otel-sentry-bridge: set_tag failed", exc_info=True)


def set_tags(tags: Mapping[str, object]) -> None:
    """``set_tag`` for each item."""
    try:
        for key, value in dict(tags).items():
            set_tag(key, value)
    except Exception:
        logger.warning("otel-sentry-bridge: set_tags failed", exc_info=True)


def set_user(user: Optional[Mapping[str, Any]]) -> None:
    """The user of what follows (Sentry's ``user``; ``None`` clears it). Inside a request ``id``, ``email``
    and ``username`` also go onto the span (``enduser.id``, ``user.email``, ``user.name``)."""
    try:
        scopes.get_isolation_scope().set_user(user)
        scope = _current.get()
        if scope is None:
            return
        for key, attribute in _USER_ATTRIBUTES.items():
            value = (user or {}).get(key)
            if value is not None:
                scope.user[key] = str(value)
                scope.set_attribute(attribute, str(value))
    except Exception:
        logger.warning("otel-sentry-bridge: set_user failed", exc_info=True)


def set_context(key: str, value: Optional[Mapping[str, Any]]) -> None:
    """A Sentry context (``contexts[key]``) for what follows; Sentry only (OTLP has no such thing)."""
    scopes.get_isolation_scope().set_context(key, value)


def set_extra(key: str, value: Any) -> None:
    """A Sentry extra (``extra[key]``) for what follows; Sentry only."""
    scopes.get_isolation_scope().set_extra(key, value)


def set_level(level: Optional[str]) -> None:
    """The level of every event that follows (sentry-sdk: the scope's level wins over the event's)."""
    scopes.get_isolation_scope().set_level(level)


def add_breadcrumb(
    crumb: Optional[Mapping[str, Any]] = None, hint: Optional[Mapping[str, Any]] = None, **kwargs: Any
) -> None:
    """A breadcrumb on the isolation scope (``before_breadcrumb`` and ``max_breadcrumbs`` apply)."""
    scopes.get_isolation_scope().add_breadcrumb(crumb, hint, **kwargs)


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
