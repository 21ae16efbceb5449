"""The request bookkeeping that WSGI and ASGI share: one SERVER span and one scope per HTTP request.

``bridge.wsgi`` and ``bridge.asgi`` each read their protocol (an environ, an ASGI scope and its messages)
into OpenTelemetry's request attributes with OpenTelemetry's own helpers; everything after that is the
same for both and lives here:

- :class:`ServerMiddleware`: the per-configuration settings (excluded URLs, captured headers, the
  privacy rules), the guarded user hooks (``skip``, ``identify_user``, ``session_id``, ``view_name``),
  and :meth:`ServerMiddleware.open_span`, which names the request, starts its span under the incoming
  trace context (``traceparent`` or ``sentry-trace``/``baggage``, through the global propagator) and
  remembers the trace for unsampled errors;
- :class:`ServerRequest`: one traced request: its span, context and scope; ``activate``/``deactivate``,
  ``fail`` (an exception that escaped the app: 500 when no response started, ``error.type``, ERROR, an
  ``exception`` event) and ``end`` (once; the one place where the request is over, for both protocols:
  the span ends and the HTTP server metrics of ``bridge.metrics`` are recorded).

Nothing here raises into the app: hooks are guarded, failures are logged.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from opentelemetry import context as context_api
from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation._semconv import _report_new, _report_old, _StabilityMode
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import (
    ExcludeList,
    SanitizeValue,
    normalise_request_header_name,
    normalise_response_header_name,
)

from bridge import scope as scope_module
from bridge import setup
from bridge.metrics import WSGI_METER_NAME, RequestMeasure, ServerMetrics
from bridge.scope import RequestScope
from bridge.sentry.privacy import filter_attributes
from bridge.tracebook import remember as remember_trace

__all__ = [
    "PRIVATE_HEADERS",
    "HookGuard",
    "in_traced_request",
    "ServerMiddleware",
    "ServerRequest",
    "semconv_mode",
    "warn_untraced",
]

logger = logging.getLogger(__name__)

# Headers that never leave the process unless send_default_pii is on, even if a capture list names them.
PRIVATE_HEADERS = (
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-forwarded-for",
    "x-real-ip",
)


def semconv_mode() -> _StabilityMode:
    """The stable HTTP conventions when ``OTEL_SEMCONV_STABILITY_OPT_IN`` is unset (the bridge never emitted
    others); when it is set, read as OpenTelemetry's instrumentations read it, so all of a process's agree:
    ``http`` stable, ``http/dup`` both, any other value the old experimental conventions."""
    raw = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    if not raw.strip():
        return _StabilityMode.HTTP
    opt_in = {part.strip().lower() for part in raw.split(",")}
    if "http/dup" in opt_in:
        return _StabilityMode.HTTP_DUP
    return _StabilityMode.HTTP if "http" in opt_in else _StabilityMode.DEFAULT


def in_traced_request(parent: Optional[context_api.Context] = None) -> bool:
    """A traced request is current already (nested middleware): a new span is INTERNAL, not measured again."""
    return trace_api.get_current_span(parent).get_span_context().is_valid


_untraced_warned = [float("-inf")]


def warn_untraced() -> None:
    """From an ``except`` block: a request the bridge cannot trace (a broken environ or ASGI scope) is served
    untraced; WARNING with the traceback once a minute, DEBUG otherwise (one per request would flood the logs)."""
    now = time.monotonic()
    if now - _untraced_warned[0] >= 60.0:
        _untraced_warned[0] = now
        logger.warning(
            "otel-sentry-bridge: could not start a span for this request; it is served untraced "
            "(similar failures are logged at DEBUG for a minute)",
            exc_info=True,
        )
    else:
        logger.debug("otel-sentry-bridge: could not start a span for this request", exc_info=True)


class HookGuard:
    """Calls a user hook; a hook that raises is logged (once a minute per hook) and treated as absent."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def call(self, name: str, hook: Callable[..., Any], *args: Any) -> Any:
        try:
            return hook(*args)
        except Exception:
            now = time.monotonic()
            if now - self._last.get(name, float("-inf")) >= 60.0:
                self._last[name] = now
                logger.warning(
                    "otel-sentry-bridge: the %s hook raised; ignoring it for this request", name, exc_info=True
                )
            return None


class ServerMiddleware:
    """What a server middleware keeps across requests: hooks, their guard, and settings per ``init()``.

    ``carrier`` below is what the hooks receive (the WSGI environ, the ASGI scope).
    """

    # The instrumentation scope of the HTTP server metrics: OpenTelemetry's own (bridge.metrics).
    meter_name = WSGI_METER_NAME

    def __init__(
        self,
        *,
        skip: Optional[Callable[[Any], bool]] = None,
        identify_user: Optional[Callable[[Any], Optional[str]]] = None,
        session_id: Optional[Callable[[Any], Optional[str]]] = None,
        view_name: Optional[Callable[[Any], Optional[str]]] = None,
    ) -> None:
        self.skip = skip
        self.identify_user = identify_user
        self.session_id = session_id
        self.view_name = view_name
        self.guard = HookGuard()
        self._mode = semconv_mode()
        self._settings_for: Optional[setup.Bridge] = None
        self._excluded = ExcludeList([])
        self._capture: Optional[tuple[SanitizeValue, list[str], list[str]]] = None
        self._auto_init_failed = False
        self.meter_provider: Any = None  # given by the user (OpenTelemetry's argument), else the metrics leg's
        self._server_metrics: Optional[tuple[object, ServerMetrics]] = None

    # -- per-configuration settings, computed once per init() rather than per request --------------
    def _settings(self, bridge: setup.Bridge) -> None:
        options = bridge.options
        self._excluded = ExcludeList(list(options.excluded_urls))
        sanitize = list(options.sanitize_headers)
        if not options.send_default_pii:
            sanitize += [f"^{re.escape(name)}$" for name in PRIVATE_HEADERS]
        if options.capture_request_headers or options.capture_response_headers:
            self._capture = (
                SanitizeValue(sanitize),
                list(options.capture_request_headers),
                list(options.capture_response_headers),
            )
        else:
            self._capture = None
        self._settings_for = bridge

    def _active(self) -> Optional[setup.Bridge]:
        bridge = setup.active()
        if bridge is None and not self._auto_init_failed:
            # Wrapped but never configured: configure from the environment, once.
            try:
                bridge = setup.init()
            except Exception:
                self._auto_init_failed = True
                logger.exception("otel-sentry-bridge: init() from the environment failed; requests are not traced")
                return None
        if bridge is None or not bridge.enabled:
            return None
        if bridge is not self._settings_for:
            self._settings(bridge)
        return bridge

    def _skipped(self, carrier: Any, url: Callable[[], str]) -> bool:
        """The ``skip`` hook or the excluded URLs (``url`` is only built when there are any) say so."""
        if self.skip is not None and self.guard.call("skip", self.skip, carrier):
            return True
        return bool(self._excluded._excluded_urls) and self._excluded.url_disabled(url())

    # -- the HTTP server metrics ---------------------------------------------------------------------
    def metrics_provider(self, bridge: setup.Bridge) -> Any:
        """Where the HTTP server metrics go: ``meter_provider`` given, else the bridge's metrics leg, else
        nowhere (None)."""
        if self.meter_provider is not None:
            return self.meter_provider
        if bridge.metrics is not None:
            return bridge.metrics.meter_provider
        return None

    def server_metrics(self, bridge: setup.Bridge) -> Optional[ServerMetrics]:
        """The instruments for ``bridge`` (made once per provider and conventions mode), or None."""
        provider = self.metrics_provider(bridge)
        if provider is None:
            return None
        cached = self._server_metrics
        if cached is None or cached[0] is not provider or cached[1].mode is not self._mode:
            cached = self._server_metrics = (provider, ServerMetrics.of(provider, self._mode, self.meter_name))
        return cached[1]

    def measure(self, request: ServerRequest, bridge: setup.Bridge, attributes: Mapping[str, Any]) -> None:
        """Start measuring ``request`` (active requests up), unless it is nested in a traced request, which is
        measured already (no second count). Never raises."""
        if request.nested:
            return
        try:
            metrics = self.server_metrics(bridge)
            if metrics is not None:
                request.measure = metrics.begin(attributes)
                request.metrics = metrics
        except Exception:
            logger.warning("otel-sentry-bridge: could not start the request's metrics", exc_info=True)

    # -- the request's span -------------------------------------------------------------------------
    def name_request(
        self, bridge: setup.Bridge, carrier: Any, attributes: dict[str, Any], name: str
    ) -> tuple[str, dict[str, Any]]:
        """The span name and attributes: the request's attributes privacy-filtered as the Sentry leg would,
        then the ``view_name``, ``identify_user`` and ``session_id`` hooks applied (what they return is the
        app's own choice)."""
        if not bridge.options.send_default_pii:
            attributes = filter_attributes(attributes, False)
        if self.view_name is not None:
            name = self.apply_view_name(carrier, attributes, name)
        for hook_name, hook, key in (
            ("identify_user", self.identify_user, "enduser.id"),
            ("session_id", self.session_id, "session.id"),
        ):
            if hook is not None:
                value = self.guard.call(hook_name, hook, carrier)
                if value is not None:
                    attributes[key] = str(value)
        return name, attributes

    def apply_view_name(self, carrier: Any, attributes: dict[str, Any], name: str) -> str:
        """A route template (``/users/{id}``) becomes ``http.route`` and ``"{METHOD} {route}"``; any other
        name becomes the span name with Sentry source ``component``. Returns the span name."""
        assert self.view_name is not None
        view = self.guard.call("view_name", self.view_name, carrier)
        if not view:
            return name
        view = str(view)
        if view.startswith("/"):
            method = name.split(" ", 1)[0]
            attributes["http.route"] = view
            return f"{method} {view}"
        attributes["sentry.transaction_source"] = "component"
        return view

    def request_header_attributes(self, headers: Mapping[str, Any]) -> dict[str, Any]:
        """The request headers that ``capture_request_headers`` names, sanitized (``headers``: name → value)."""
        if self._capture is None or not self._capture[1]:
            return {}
        sanitize, request_headers, _ = self._capture
        return dict(sanitize.sanitize_header_values(dict(headers), request_headers, normalise_request_header_name))

    def response_header_attributes(self, headers: Mapping[str, Any]) -> dict[str, Any]:
        """The response headers that ``capture_response_headers`` names, sanitized."""
        if self._capture is None or not self._capture[2]:
            return {}
        sanitize, _, response_headers = self._capture
        return dict(sanitize.sanitize_header_values(dict(headers), response_headers, normalise_response_header_name))

    @property
    def captures_response_headers(self) -> bool:
        return self._capture is not None and bool(self._capture[2])

    def open_span(
        self,
        bridge: setup.Bridge,
        name: str,
        attributes: dict[str, Any],
        carrier: Any,
        getter: Getter[Any],
        tracer: Optional[trace_api.Tracer] = None,
        nested: Optional[bool] = None,
    ) -> tuple[trace_api.Span, context_api.Context]:
        """Start the request's span: SERVER under the incoming trace context, or INTERNAL when a traced
        request is already current (nested middleware; ``nested``: the caller's ``in_traced_request()``,
        made in this same context, so it is not asked twice). Returns the span and its context."""
        parent = context_api.get_current()
        if nested if nested is not None else in_traced_request(parent):
            kind = SpanKind.INTERNAL
        else:
            kind = SpanKind.SERVER
            parent = propagate.extract(carrier, context=parent, getter=getter)
        span = (tracer or bridge.tracer).start_span(name, context=parent, kind=kind, attributes=attributes)
        if not span.is_recording():  # no processor sees it; its errors still need the incoming DSC
            remember_trace(span, parent, track=False)
        return span, trace_api.set_span_in_context(span, parent)


class ServerRequest:
    """One traced request: its span, context and scope, and whether its response has started; ``nested``:
    inside another traced request (an INTERNAL span, not measured again)."""

    __slots__ = (
        "span",
        "context",
        "scope",
        "mode",
        "started",
        "status_code",
        "ended",
        "_tokens",
        "nested",
        "metrics",
        "measure",
    )

    def __init__(
        self,
        span: trace_api.Span,
        context: context_api.Context,
        scope: RequestScope,
        mode: _StabilityMode,
        nested: bool = False,
    ) -> None:
        self.span = span
        self.context = context
        self.scope = scope
        self.mode = mode
        self.started = False
        self.status_code: Optional[int] = None  # the response's, when a protocol records it (ASGI does)
        self.ended = False
        self._tokens: list[Any] = []
        self.nested = nested
        self.metrics: Optional[ServerMetrics] = None  # set with ``measure`` by ServerMiddleware.measure
        self.measure: Optional[RequestMeasure] = None

    def activate(self) -> None:
        self._tokens.append((context_api.attach(self.context), scope_module._current.set(self.scope)))

    def deactivate(self) -> None:
        if self._tokens:
            otel_token, scope_token = self._tokens.pop()
            scope_module._current.reset(scope_token)
            context_api.detach(otel_token)

    def fail(self, exc: BaseException) -> None:
        """Record an exception that escaped the app; never raises. ``SystemExit(0)`` is no error."""
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return
        try:
            span = self.span
            if not self.started:
                mode = self.mode
                if self.measure is not None:  # the server answers 500; the metrics say so, as the span does
                    key = "http.response.status_code" if _report_new(mode) else "http.status_code"
                    self.measure.response[key] = 500
                if span.is_recording():
                    if _report_new(mode):
                        span.set_attribute("http.response.status_code", 500)
                    if _report_old(mode):
                        span.set_attribute("http.status_code", 500)
            self.scope.fail(exc)  # once per exception: a framework helper may have recorded it already
        except Exception:
            logger.warning("otel-sentry-bridge: could not record an exception", exc_info=True)

    def end(self, end_time: Optional[int] = None) -> None:
        """The request is over (``end_time``: when its last byte went, in ns; default now). Once.

        The one place both protocols pass through at the end of a request: the span ends, and the HTTP server
        metrics record the duration (to ``end_time`` or now, from the request's start) with
        ``self.scope.attributes`` (method, scheme, route, ``error.type``) over what the response added
        (status code; ``error.type`` for a 5xx), and the active requests go down.
        """
        if self.ended:
            return
        self.ended = True
        try:
            self.span.end(end_time)
        except Exception:
            logger.warning("otel-sentry-bridge: could not end a span", exc_info=True)
        metrics, measure = self.metrics, self.measure
        if metrics is not None and measure is not None:
            self.measure = None
            try:
                metrics.finish(measure, self.scope.attributes, self.context, end_time)
            except Exception:
                logger.warning("otel-sentry-bridge: could not record the request's metrics", exc_info=True)
