"""Sentry's scopes, as sentry-sdk 2.x separates them: the process's, the isolation scope and the current scope.

- the **process scope** holds what ``set_tag`` and friends set outside any request;
- each request (or job) gets an **isolation scope**, forked from the process scope when it starts: the
  top-level setters and ``add_breadcrumb`` write there, so concurrent requests never see each other's data;
  ``isolation_scope()`` forks a new one for a block;
- ``new_scope()`` forks the **current scope** for a block: what is set on the scope it yields ends with the
  block (``fingerprint`` too).

An event gets, in this order (later wins): the isolation scope's data, then the current scope's, then the
capture call's own keyword arguments. Values are made JSON-safe when they are set (``bridge.sentry.values``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Optional

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from bridge.sentry import breadcrumbs as crumbs_module
from bridge.sentry.context import clean_tag_key, clean_tag_value
from bridge.sentry.values import safe_repr, safe_value

__all__ = [
    "Scope",
    "ScopeData",
    "process_scope",
    "get_isolation_scope",
    "get_current_scope",
    "new_scope",
    "isolation_scope",
    "request_var",
    "settings",
]

logger = logging.getLogger(__name__)

LEVELS = ("fatal", "error", "warning", "info", "debug")
_ids = RandomIdGenerator()


class Settings:
    """What the active ``init()`` set for scopes (``max_breadcrumbs``, ``before_breadcrumb``)."""

    max_breadcrumbs: int = crumbs_module.DEFAULT_MAX_BREADCRUMBS
    before_breadcrumb: Optional[crumbs_module.BeforeBreadcrumb] = None


settings = Settings()


class Scope:
    """One layer of scope data, with sentry-sdk's setters."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.user: Optional[dict[str, Any]] = None
        self.contexts: dict[str, Any] = {}
        self.extras: dict[str, Any] = {}
        self.level: Optional[str] = None
        self.fingerprint: Optional[list[str]] = None
        self.breadcrumbs = crumbs_module.Breadcrumbs(settings.max_breadcrumbs)
        self.last_event_id: Optional[str] = None
        self._trace: Optional[trace_api.SpanContext] = None  # a trace for events outside any span

    def fork(self) -> Scope:
        scope = Scope()
        scope.tags = dict(self.tags)
        scope.user = dict(self.user) if self.user is not None else None
        scope.contexts = dict(self.contexts)
        scope.extras = dict(self.extras)
        scope.level = self.level
        scope.fingerprint = list(self.fingerprint) if self.fingerprint is not None else None
        scope.breadcrumbs = self.breadcrumbs.copy()
        return scope

    # -- sentry-sdk's setters (none raises into the app: bad keys and values are made text) -------------
    def set_tag(self, key: str, value: Any) -> None:
        self.tags[_text(key)[:200]] = _text(value)[:200]

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        try:
            items = list(dict(tags).items())
        except Exception:
            logger.warning("otel-sentry-bridge: set_tags takes a mapping, not %s", type(tags).__name__)
            return
        for key, value in items:
            self.set_tag(key, value)

    def remove_tag(self, key: str) -> None:
        self.tags.pop(key, None)

    def set_user(self, user: Optional[Mapping[str, Any]]) -> None:
        made = safe_value(dict(user)) if isinstance(user, Mapping) and user else None
        self.user = made if isinstance(made, dict) else None

    def set_context(self, key: str, value: Optional[Mapping[str, Any]]) -> None:
        if value is None:
            self.contexts.pop(_text(key), None)
            return
        made = safe_value(value)
        self.contexts[_text(key)] = made if isinstance(made, dict) else {"value": made}

    def remove_context(self, key: str) -> None:
        self.contexts.pop(key, None)

    def set_extra(self, key: str, value: Any) -> None:
        self.extras[_text(key)] = safe_value(value)

    def remove_extra(self, key: str) -> None:
        self.extras.pop(key, None)

    def set_level(self, level: Optional[str]) -> None:
        self.level = _level(level)

    def clear_breadcrumbs(self) -> None:
        self.breadcrumbs.clear()

    def add_breadcrumb(
        self, crumb: Optional[Mapping[str, Any]] = None, hint: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> None:
        try:
            made = crumbs_module.make_crumb(crumb, hint, kwargs, settings.before_breadcrumb)
            if made is not None:
                self.breadcrumbs.append(made)
        except Exception:
            logger.warning("otel-sentry-bridge: could not add a breadcrumb", exc_info=True)

    def trace(self) -> trace_api.SpanContext:
        """This scope's own trace, for events outside any span (sentry-sdk's propagation context)."""
        if self._trace is None:
            self._trace = trace_api.SpanContext(_ids.generate_trace_id(), _ids.generate_span_id(), is_remote=False)
        return self._trace


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return safe_repr(value)


def _level(level: Any) -> Optional[str]:
    if level is None:
        return None
    text = _text(level).lower()
    text = {"warn": "warning", "critical": "fatal"}.get(text, text)
    return text if text in LEVELS else "info"


class ScopeData:
    """What an event takes from its scopes, merged at the moment of capture (applied later, on the worker)."""

    __slots__ = ("tags", "user", "contexts", "extras", "level", "fingerprint", "breadcrumbs")

    def __init__(self, layers: Sequence[Scope], overrides: Optional[Mapping[str, Any]] = None) -> None:
        self.tags: dict[str, str] = {}
        self.user: Optional[dict[str, Any]] = None
        self.contexts: dict[str, Any] = {}
        self.extras: dict[str, Any] = {}
        self.level: Optional[str] = None
        self.fingerprint: Optional[list[str]] = None
        for layer in layers:
            self.tags.update(layer.tags)
            self.contexts.update(layer.contexts)
            self.extras.update(layer.extras)
            self.user = layer.user if layer.user is not None else self.user
            self.level = layer.level or self.level
            self.fingerprint = layer.fingerprint if layer.fingerprint is not None else self.fingerprint
        self.breadcrumbs = crumbs_module.merged((layer.breadcrumbs for layer in layers), settings.max_breadcrumbs)
        if overrides:
            extra = Scope()
            for key, value in overrides.items():
                _apply_keyword(extra, key, value)
            self.tags.update(extra.tags)
            self.contexts.update(extra.contexts)
            self.extras.update(extra.extras)
            self.user = extra.user if extra.user is not None else self.user
            self.level = extra.level or self.level
            self.fingerprint = extra.fingerprint if extra.fingerprint is not None else self.fingerprint

    def apply(self, event: dict[str, Any]) -> None:
        """sentry-sdk's ``apply_to_event`` for error and message events."""
        if self.level is not None:
            event["level"] = self.level
        if self.fingerprint is not None and event.get("fingerprint") is None:
            event["fingerprint"] = list(self.fingerprint)
        if self.user is not None:
            event["user"] = {**event.get("user", {}), **self.user}
        if self.tags:
            tags = event.setdefault("tags", {})
            for key, value in self.tags.items():
                text = clean_tag_value(value)
                if key and text:  # Sentry refuses empty tags (an empty one stays on the span only)
                    tags[clean_tag_key(key)] = text
        if self.extras:
            event.setdefault("extra", {}).update(self.extras)
        if self.contexts:
            contexts = event.setdefault("contexts", {})
            for key, value in self.contexts.items():
                if key != "trace":  # the trace context is the event's own span
                    contexts[key] = value
        if self.breadcrumbs:
            values = event.setdefault("breadcrumbs", {}).setdefault("values", [])
            values.extend(self.breadcrumbs)
            values.sort(key=lambda crumb: crumb.get("timestamp", 0.0))


SCOPE_KWARGS = ("tags", "extras", "contexts", "user", "level", "fingerprint")


def _apply_keyword(scope: Scope, key: str, value: Any) -> None:
    """sentry-sdk's ``update_from_kwargs``: ``capture_*(..., tags=..., extras=..., ...)``."""
    if value is None:
        return
    if key == "tags":
        scope.set_tags(value)
    elif key == "extras":
        for name, item in dict(value).items():
            scope.set_extra(name, item)
    elif key == "contexts":
        for name, item in dict(value).items():
            scope.set_context(name, item)
    elif key == "user":
        scope.set_user(value)
    elif key == "level":
        scope.set_level(value)
    elif key == "fingerprint":
        scope.fingerprint = [str(part) for part in value]
    else:
        raise TypeError(f"unknown scope keyword {key!r}; known: {', '.join(SCOPE_KWARGS)}")


# -- which scope is which, per context ------------------------------------------------------------------
_process = Scope()
# The request being served (bridge.scope.RequestScope), set by the middleware and the framework helpers.
request_var: ContextVar[Any] = ContextVar("otel_sentry_bridge_request", default=None)
# (isolation scope, the request it was made in): a request started later gets its own.
_isolation: ContextVar[Optional[tuple[Scope, Any]]] = ContextVar("otel_sentry_bridge_isolation", default=None)
# (current scope, the isolation scope it belongs to).
_current: ContextVar[Optional[tuple[Scope, Scope]]] = ContextVar("otel_sentry_bridge_current", default=None)


def process_scope() -> Scope:
    return _process


def get_isolation_scope() -> Scope:
    """The isolation scope here: the block's (``isolation_scope()``), else the request's, else the process's."""
    request = request_var.get()
    pinned = _isolation.get()
    if pinned is not None and pinned[1] is request:
        return pinned[0]
    if request is not None:
        return request.isolation  # type: ignore[no-any-return]
    return _process


def get_current_scope() -> Optional[Scope]:
    """The scope of the innermost ``new_scope()`` block of this isolation scope, if any."""
    pinned = _current.get()
    if pinned is not None and pinned[1] is get_isolation_scope():
        return pinned[0]
    return None


def layers(request: Any = None) -> list[Scope]:
    """The scopes an event takes data from, outermost first; ``request``: a request no longer current
    (the middleware records an escaped exception after the app's context is gone)."""
    if request is not None and request_var.get() is not request:
        return [request.isolation]
    isolation = get_isolation_scope()
    current = get_current_scope()
    return [isolation] if current is None else [isolation, current]


@contextlib.contextmanager
def new_scope() -> Iterator[Scope]:
    """A fork of the current scope for the block: its changes end with the block."""
    isolation = get_isolation_scope()
    current = get_current_scope()
    scope = current.fork() if current is not None else Scope()
    token = _current.set((scope, isolation))
    try:
        yield scope
    finally:
        _current.reset(token)


@contextlib.contextmanager
def isolation_scope() -> Iterator[Scope]:
    """A fork of the isolation scope for the block (and a fresh current scope): as a new request gets."""
    scope = get_isolation_scope().fork()
    token = _isolation.set((scope, request_var.get()))
    try:
        yield scope
    finally:
        _isolation.reset(token)


def configure(max_breadcrumbs: int, before_breadcrumb: Optional[crumbs_module.BeforeBreadcrumb]) -> None:
    """Called by ``init()``: the process scope's ring takes the new size."""
    settings.max_breadcrumbs = max(0, int(max_breadcrumbs))
    settings.before_breadcrumb = before_breadcrumb
    _process.breadcrumbs = crumbs_module.Breadcrumbs(settings.max_breadcrumbs, _process.breadcrumbs)


def enter(isolation: Scope, current: Optional[Scope]) -> None:
    """Make ``isolation`` (and ``current``) this context's scopes, not reset (a new thread's first act)."""
    _isolation.set((isolation, request_var.get()))
    if current is not None:
        _current.set((current, isolation))


def reset_process_scope() -> None:
    """``shutdown()``: a later ``init()`` starts from an empty process scope."""
    global _process
    _process = Scope()
