"""``BridgeMiddleware``: one SERVER span per WSGI request, built on OpenTelemetry's WSGI instrumentation.

The request and response attributes come from ``opentelemetry.instrumentation.wsgi`` (its semantic
conventions are reused, not re-implemented). What this module adds:
- exceptions that escape the app (from the call, from iterating the body, from ``close()``) become
  ``exception`` events with ERROR status and ``error.type``, and the server still sees the very same
  exception;
- the body's ``close()`` is called exactly once whatever happens, and the span ends only when the body
  has been sent or closed, so streaming responses are timed right; ``wsgi.file_wrapper`` objects are
  handed back to the server as they are (so it can still use ``sendfile``);
- guarded user hooks, privacy scrubbing of the request attributes, and the per-request scope;
- HTTP server metrics (``bridge.metrics``), as OpenTelemetry's middleware records them.
It takes ``OpenTelemetryMiddleware``'s constructor arguments, in its order, with their meaning
(``docs/migrating-from-opentelemetry.md``).
Nothing the bridge does can raise into the app or the server: its own failures are logged.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, Callable, Optional
from wsgiref.util import request_uri

from opentelemetry import context as context_api
from opentelemetry import metrics as metrics_api
from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation._semconv import _report_new, _report_old, _StabilityMode
from opentelemetry.instrumentation.wsgi import (
    add_response_attributes,
    collect_request_attributes,
    get_default_span_name,
    wsgi_getter,
)
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import (
    ExcludeList,
    SanitizeValue,
    normalise_request_header_name,
    normalise_response_header_name,
)

from bridge import scope as scope_module
from bridge import setup
from bridge.config import Options
from bridge.metrics import RequestMeasure, ServerMetrics
from bridge.scope import RequestScope
from bridge.sentry.privacy import filter_attributes
from bridge.tracebook import remember as remember_trace
from bridge.version import __version__

__all__ = ["BridgeMiddleware"]

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]
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


def _semconv_mode() -> _StabilityMode:
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


def _foreign_global_provider() -> bool:
    """A global TracerProvider set by other code than the bridge (OpenTelemetry's own SDK setup)."""
    provider = trace_api.get_tracer_provider()
    return not isinstance(provider, (trace_api.ProxyTracerProvider, setup._DelegatingTracerProvider))


_untraced_warned = [float("-inf")]


def _warn_untraced() -> None:
    """From an ``except`` block: a request the bridge cannot trace (a broken environ, say) is served untraced;
    WARNING with the traceback once a minute, DEBUG otherwise (one per request would flood the logs)."""
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


class _HookGuard:
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


class BridgeMiddleware:
    """Wrap a WSGI app: ``app = BridgeMiddleware(app)``. Uses the configuration of ``bridge.init()``.

    ``OpenTelemetryMiddleware``'s arguments, in its order: ``request_hook(span, environ)``,
    ``response_hook(span, environ, status, headers)``, ``tracer_provider`` (spans go to it instead of the
    bridge's provider), ``meter_provider`` (the HTTP server metrics go to it instead of the bridge's metrics
    leg). Without ``bridge.init()`` and with a global TracerProvider set by other code, the middleware uses
    the global providers, as ``OpenTelemetryMiddleware`` does (settings from the environment); without
    either, it calls ``bridge.init()`` from the environment once.

    The bridge's own hooks (each optional and guarded):
    ``skip(environ) -> bool``, ``identify_user(environ) -> str | None`` (``enduser.id``),
    ``session_id(environ) -> str | None`` (``session.id``), ``view_name(environ) -> str | None``
    (a route template such as ``/users/{id}`` becomes ``http.route`` and the span name
    ``"{METHOD} {route}"``; any other name becomes the span name with Sentry source ``component``),
    ``request_hook(span, environ)``, ``response_hook(span, environ, status, headers)``.
    """

    def __init__(
        self,
        app: WSGIApp,
        request_hook: Optional[Callable[[trace_api.Span, dict[str, Any]], None]] = None,
        response_hook: Optional[Callable[[trace_api.Span, dict[str, Any], str, list[tuple[str, str]]], None]] = None,
        tracer_provider: Optional[trace_api.TracerProvider] = None,
        meter_provider: Optional[metrics_api.MeterProvider] = None,
        *,
        skip: Optional[Callable[[dict[str, Any]], bool]] = None,
        identify_user: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
        session_id: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
        view_name: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
    ) -> None:
        self.app = app
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._tracer: Optional[trace_api.Tracer] = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(setup.SCOPE_NAME, __version__)
        # Without bridge.init() but beside OpenTelemetry's own setup: a Bridge without legs (for its settings
        # and the request scope), the global TracerProvider's tracer, the global MeterProvider.
        self._standalone: Optional[tuple[setup.Bridge, trace_api.Tracer]] = None
        self._server_metrics: Optional[tuple[object, ServerMetrics]] = None
        self.skip = skip
        self.identify_user = identify_user
        self.session_id = session_id
        self.view_name = view_name
        self.request_hook = request_hook
        self.response_hook = response_hook
        self.guard = _HookGuard()
        self._mode = _semconv_mode()
        self._settings_for: Optional[setup.Bridge] = None
        self._excluded = ExcludeList([])
        self._capture: Optional[tuple[SanitizeValue, list[str], list[str]]] = None
        self._auto_init_failed = False

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
        if bridge is None and (self.tracer_provider is not None or _foreign_global_provider()):
            bridge = self._standalone_bridge()
        elif bridge is None and not self._auto_init_failed:
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

    def _standalone_bridge(self) -> Optional[setup.Bridge]:
        if self._standalone is None:
            if self._auto_init_failed:
                return None
            try:
                options = Options.resolve()
                bridge = setup.Bridge(replace(options, exporters=(), metrics_exporters=()))
            except Exception:
                self._auto_init_failed = True
                logger.exception("otel-sentry-bridge: the settings in the environment are invalid; not traced")
                return None
            tracer = trace_api.get_tracer_provider().get_tracer(setup.SCOPE_NAME, __version__)
            self._standalone = (bridge, tracer)
        return self._standalone[0]

    def _tracer_for(self, bridge: setup.Bridge) -> trace_api.Tracer:
        if self._tracer is not None:
            return self._tracer
        if self._standalone is not None and bridge is self._standalone[0]:
            return self._standalone[1]
        return bridge.tracer

    def _metrics_for(self, bridge: setup.Bridge) -> Optional[ServerMetrics]:
        """The HTTP server metrics: to ``meter_provider``, else the bridge's metrics leg, else (beside
        OpenTelemetry's own setup) the global MeterProvider."""
        provider: Any = self.meter_provider
        if provider is None:
            if bridge.metrics is not None:
                provider = bridge.metrics.meter_provider
            elif self._standalone is not None and bridge is self._standalone[0]:
                provider = metrics_api.get_meter_provider()
            else:
                return None
        cached = self._server_metrics
        if cached is None or cached[0] is not provider or cached[1].mode is not self._mode:
            cached = self._server_metrics = (provider, ServerMetrics.of(provider, self._mode))
        return cached[1]

    # -- the WSGI call ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = self._begin(environ, start_response)
        except Exception:
            _warn_untraced()
            request = None
        if request is None:
            return self.app(environ, start_response)
        request.activate()
        try:
            result = self.app(environ, request.start_response)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit...: the context must not stay attached
            request.deactivate()
            request.fail(exc)
            request.end()
            raise
        request.deactivate()
        return request.wrap(result, environ)

    def _begin(self, environ: dict[str, Any], start_response: StartResponse) -> Optional[_Request]:
        bridge = self._active()
        if bridge is None:
            return None
        if self.skip is not None and self.guard.call("skip", self.skip, environ):
            return None
        if self._excluded._excluded_urls and self._excluded.url_disabled(request_uri(environ)):
            return None
        mode = self._mode
        attributes: dict[str, Any] = collect_request_attributes(environ, mode)
        if "url.path" not in attributes and _report_new(mode):
            # OTel takes url.path from RAW_URI/REQUEST_URI, which wsgiref and others do not set.
            attributes["url.path"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") or "/"
            if environ.get("QUERY_STRING"):
                attributes["url.query"] = environ["QUERY_STRING"]
        if not bridge.options.send_default_pii:  # the same privacy rules as the Sentry leg's
            attributes = filter_attributes(attributes, False)
        name = get_default_span_name(environ)
        if self.view_name is not None:
            view = self.guard.call("view_name", self.view_name, environ)
            if view:
                view = str(view)
                method = name.split(" ", 1)[0]
                if view.startswith("/"):
                    attributes["http.route"] = view
                    name = f"{method} {view}"
                else:
                    attributes["sentry.transaction_source"] = "component"
                    name = view
        for hook_name, hook, key in (
            ("identify_user", self.identify_user, "enduser.id"),
            ("session_id", self.session_id, "session.id"),
        ):
            if hook is not None:
                value = self.guard.call(hook_name, hook, environ)
                if value is not None:
                    attributes[key] = str(value)
        parent = context_api.get_current()
        if trace_api.get_current_span(parent).get_span_context().is_valid:
            kind = SpanKind.INTERNAL  # already inside a traced request (nested middleware)
        else:
            kind = SpanKind.SERVER
            parent = propagate.extract(environ, context=parent, getter=wsgi_getter)
        # Captured headers go on the request's SERVER span only (as OpenTelemetry's middleware does), not again
        # on a span nested in it.
        if self._capture is not None and self._capture[1] and kind is SpanKind.SERVER:
            sanitize, request_headers, _ = self._capture
            headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
            attributes.update(sanitize.sanitize_header_values(headers, request_headers, normalise_request_header_name))
        span = self._tracer_for(bridge).start_span(name, context=parent, kind=kind, attributes=attributes)
        if not span.is_recording():  # no processor sees it; its errors still need the incoming DSC
            remember_trace(span, parent, track=False)
        request = _Request(
            self, environ, bridge, span, trace_api.set_span_in_context(span, parent), attributes, start_response
        )
        if self.request_hook is not None:
            self.guard.call("request_hook", self.request_hook, span, environ)
        # A span nested in a traced request: that request is measured already (no second count).
        server_metrics = self._metrics_for(bridge) if kind is SpanKind.SERVER else None
        if server_metrics is not None:
            request.metrics = server_metrics
            request.measure = server_metrics.begin(attributes)
        return request


class _Request:
    """One traced request: its span, context, scope, and the response's progress."""

    __slots__ = (
        "middleware",
        "environ",
        "span",
        "context",
        "scope",
        "server_start_response",
        "started",
        "ended",
        "_tokens",
        "metrics",
        "measure",
    )

    def __init__(
        self,
        middleware: BridgeMiddleware,
        environ: dict[str, Any],
        bridge: setup.Bridge,
        span: trace_api.Span,
        context: context_api.Context,
        attributes: dict[str, Any],
        server_start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.span = span
        self.context = context
        self.scope = RequestScope(bridge, span, attributes, environ)
        self.server_start_response = server_start_response
        self.started = False
        self.ended = False
        self._tokens: list[Any] = []
        self.metrics: Optional[ServerMetrics] = None
        self.measure: Optional[RequestMeasure] = None

    def activate(self) -> None:
        self._tokens.append((context_api.attach(self.context), scope_module._current.set(self.scope)))

    def deactivate(self) -> None:
        if self._tokens:
            otel_token, scope_token = self._tokens.pop()
            scope_module._current.reset(scope_token)
            context_api.detach(otel_token)

    def start_response(self, status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        try:
            self._on_response(status, headers)
        except Exception:
            logger.warning("otel-sentry-bridge: could not record the response", exc_info=True)
        return self.server_start_response(status, headers, *exc_info)

    def _on_response(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.started = True
        span = self.span
        middleware = self.middleware
        measure = self.measure
        add_response_attributes(span, status, headers, {} if measure is None else measure.response, middleware._mode)
        self.scope.mark_failed()  # a framework that rendered a recorded failure: its type, not "500"
        capture = middleware._capture
        server_span = getattr(span, "kind", None) is SpanKind.SERVER
        if capture is not None and capture[2] and span.is_recording() and server_span:
            sanitize, _, response_headers = capture
            merged: dict[str, str] = {}
            for key, value in headers:
                key = key.lower()
                merged[key] = f"{merged[key]},{value}" if key in merged else value
            span.set_attributes(
                sanitize.sanitize_header_values(merged, response_headers, normalise_response_header_name)
            )
        if middleware.response_hook is not None:
            middleware.guard.call("response_hook", middleware.response_hook, span, self.environ, status, headers)

    def fail(self, exc: BaseException) -> None:
        """Record an exception that escaped the app; never raises. ``SystemExit(0)`` is no error."""
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return
        try:
            span = self.span
            if not self.started:
                mode = self.middleware._mode
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

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            self.span.end()
        except Exception:
            logger.warning("otel-sentry-bridge: could not end a span", exc_info=True)
        self.finish_metrics()

    def finish_metrics(self) -> None:
        """The request's duration and the end of its activity; once, when its span ends."""
        metrics, measure, self.measure = self.metrics, self.measure, None
        if metrics is None or measure is None:
            return
        try:
            metrics.finish(measure, self.scope.attributes, self.context)
        except Exception:
            logger.warning("otel-sentry-bridge: could not record the request's metrics", exc_info=True)

    def wrap(self, result: Iterable[bytes], environ: Mapping[str, Any]) -> Iterable[bytes]:
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Hand the server its own object back (sendfile stays possible); end the span on its close().
            try:
                result.close = _ClosingHook(result, self)  # type: ignore[attr-defined]
            except Exception:
                self.end()
            return result
        if type(result) is list or type(result) is tuple:
            return _SequenceBody(result, self)  # iterating it runs no app code: no context to activate
        return _ResponseBody(result, self)


class _ClosingHook:
    __slots__ = ("_close", "_request")

    def __init__(self, result: Any, request: _Request) -> None:
        self._close = getattr(result, "close", None)
        self._request = request

    def __call__(self) -> None:
        request = self._request
        try:
            if self._close is not None:
                self._close()
        except BaseException as exc:
            request.fail(exc)
            raise
        finally:
            request.end()


class _SequenceBody:
    """A body the app already made (a list or tuple of chunks): the server iterates it directly, at C speed;
    ``close()`` ends the span, exactly once. (Nothing of the app runs while it is iterated.)"""

    __slots__ = ("_chunks", "_request")

    def __init__(self, chunks: list[bytes] | tuple[bytes, ...], request: _Request) -> None:
        self._chunks = chunks
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    def close(self) -> None:
        self._request.end()


class _ResponseBody:
    """The app's body, iterated in the request's context; ends the span on ``close()``, exactly once."""

    __slots__ = ("_iterable", "_iterator", "_request", "_closed")

    def __init__(self, iterable: Iterable[bytes], request: _Request) -> None:
        self._iterable = iterable
        self._iterator: Optional[Iterator[bytes]] = None
        self._request = request
        self._closed = False

    def __iter__(self) -> _ResponseBody:
        return self

    def __len__(self) -> int:
        # Servers ask len() to set Content-Length for one-chunk bodies; answer as the app's body would.
        return len(self._iterable)  # type: ignore[arg-type]

    def __next__(self) -> bytes:
        request = self._request
        request.activate()
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            request.fail(exc)
            raise
        finally:
            request.deactivate()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        request = self._request
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                request.activate()
                try:
                    close()
                except BaseException as exc:
                    request.fail(exc)
                    raise
                finally:
                    request.deactivate()
        finally:
            request.end()
