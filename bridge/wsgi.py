"""``BridgeMiddleware``: one SERVER span per WSGI request, built on OpenTelemetry's WSGI instrumentation.

The request and response attributes come from ``opentelemetry.instrumentation.wsgi`` (its semantic
conventions are reused, not re-implemented). What this module adds:
- exceptions that escape the app (from the call, from iterating the body, from ``close()``) become
  ``exception`` events with ERROR status and ``error.type``, and the server still sees the very same
  exception;
- the span ends at the first of: the body is exhausted, iterating it raises, ``close()`` is called (as
  OpenTelemetry's own middleware does), so streaming responses are timed right and test clients that never
  close still export; that same first event calls the app's ``close()``, exactly once, from any thread;
  the body handed back is an iterator; ``wsgi.file_wrapper`` objects are handed back to the server as they
  are (so it can still use ``sendfile``) and end the span on the server's ``close()``; a body dropped
  unfinished (a test client that only read the status) ends the span when it is collected;
- guarded user hooks, privacy scrubbing of the request attributes, and the per-request scope;
- HTTP server metrics (``bridge.metrics``, recorded where the request ends: ``bridge.httpreq``), as
  OpenTelemetry's middleware records them.
It takes ``OpenTelemetryMiddleware``'s constructor arguments, in its order, with their meaning
(``docs/migrating-from-opentelemetry.md``).
Nothing the bridge does can raise into the app or the server: its own failures are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import chain
from typing import Any, Callable, Optional
from wsgiref.util import request_uri

from opentelemetry import context as context_api
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation._semconv import _report_new
from opentelemetry.instrumentation.wsgi import (
    add_response_attributes,
    collect_request_attributes,
    get_default_span_name,
    wsgi_getter,
)

from bridge import scope as scope_module
from bridge import setup
from bridge.config import Options
from bridge.httpreq import ServerMiddleware, ServerRequest, in_traced_request, warn_untraced
from bridge.scope import RequestScope
from bridge.version import __version__

__all__ = ["BridgeMiddleware"]

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]


def _foreign_global_provider() -> bool:
    """A global TracerProvider set by other code than the bridge (OpenTelemetry's own SDK setup)."""
    provider = trace_api.get_tracer_provider()
    return not isinstance(provider, (trace_api.ProxyTracerProvider, setup._DelegatingTracerProvider))


class BridgeMiddleware(ServerMiddleware):
    """Wrap a WSGI app: ``app = BridgeMiddleware(app)``. Uses the configuration of ``bridge.init()``.

    ``OpenTelemetryMiddleware``'s arguments, in its order: ``request_hook(span, environ)``,
    ``response_hook(span, environ, status, headers)``, ``tracer_provider`` (spans go to it instead of the
    bridge's provider), ``meter_provider`` (the HTTP server metrics go to it instead of the bridge's metrics
    leg). Without ``bridge.init()`` and with a global TracerProvider set by other code, the middleware uses
    the global providers, as ``OpenTelemetryMiddleware`` does (settings from the environment); without
    either, it calls ``bridge.init()`` from the environment once.

    The bridge's own hooks (keyword-only, each optional and guarded):
    ``skip(environ) -> bool``, ``identify_user(environ) -> str | None`` (``enduser.id``),
    ``session_id(environ) -> str | None`` (``session.id``), ``view_name(environ) -> str | None``
    (a route template such as ``/users/{id}`` becomes ``http.route`` and the span name
    ``"{METHOD} {route}"``; any other name becomes the span name with Sentry source ``component``).
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
        super().__init__(skip=skip, identify_user=identify_user, session_id=session_id, view_name=view_name)
        self.app = app
        self.request_hook = request_hook
        self.response_hook = response_hook
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._tracer: Optional[trace_api.Tracer] = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(setup.SCOPE_NAME, __version__)
        # Without bridge.init() but beside OpenTelemetry's own setup: a Bridge without legs (for its settings
        # and the request scope), the global TracerProvider's tracer, the global MeterProvider.
        self._standalone: Optional[tuple[setup.Bridge, trace_api.Tracer]] = None

    # -- which configuration: the bridge's, or OpenTelemetry's own global providers -------------------
    def _active(self) -> Optional[setup.Bridge]:
        if setup.active() is None and (self.tracer_provider is not None or _foreign_global_provider()):
            bridge = self._standalone_bridge()
            if bridge is None or not bridge.enabled:
                return None
            if bridge is not self._settings_for:
                self._settings(bridge)
            return bridge
        return super()._active()

    def _standalone_bridge(self) -> Optional[setup.Bridge]:
        if self._standalone is None:
            if self._auto_init_failed:
                return None
            try:
                options = Options.resolve()
                bridge = setup.Bridge(replace(options, exporters=(), metrics_exporters=(), logs_exporters=()))
            except Exception:
                self._auto_init_failed = True
                logger.exception("otel-sentry-bridge: the settings in the environment are invalid; not traced")
                return None
            tracer = trace_api.get_tracer_provider().get_tracer(setup.SCOPE_NAME, __version__)
            self._standalone = (bridge, tracer)
        return self._standalone[0]

    def _tracer_for(self, bridge: setup.Bridge) -> Optional[trace_api.Tracer]:
        """``tracer_provider``'s tracer, else the global one beside OpenTelemetry's setup, else the bridge's
        (None)."""
        if self._tracer is not None:
            return self._tracer
        if self._standalone is not None and bridge is self._standalone[0]:
            return self._standalone[1]
        return None

    def metrics_provider(self, bridge: setup.Bridge) -> object:
        """``meter_provider``, else the bridge's metrics leg, else (beside OpenTelemetry's own setup) the
        global MeterProvider."""
        provider = super().metrics_provider(bridge)
        if provider is None and self._standalone is not None and bridge is self._standalone[0]:
            return metrics_api.get_meter_provider()
        return provider

    # -- the WSGI call ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = self._begin(environ, start_response)
        except Exception:
            warn_untraced()
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
        if self._skipped(environ, lambda: request_uri(environ)):
            return None
        attributes: dict[str, Any] = collect_request_attributes(environ, self._mode)
        if "url.path" not in attributes and _report_new(self._mode):
            # OTel takes url.path from RAW_URI/REQUEST_URI, which wsgiref and others do not set.
            attributes["url.path"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") or "/"
            if environ.get("QUERY_STRING"):
                attributes["url.query"] = environ["QUERY_STRING"]
        name, attributes = self.name_request(bridge, environ, attributes, get_default_span_name(environ))
        nested = in_traced_request()
        # Captured headers go on the request's SERVER span only (as OpenTelemetry's middleware does), not again
        # on a span nested in it.
        if self._capture is not None and self._capture[1] and not nested:
            headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
            attributes.update(self.request_header_attributes(headers))
        span, context = self.open_span(
            bridge, name, attributes, environ, wsgi_getter, self._tracer_for(bridge), nested
        )
        request = _Request(self, environ, bridge, span, context, attributes, start_response, nested)
        if self.request_hook is not None:
            self.guard.call("request_hook", self.request_hook, span, environ)
        self.measure(request, bridge, attributes)
        return request


class _Request(ServerRequest):
    """One traced WSGI request: the shared bookkeeping (bridge.httpreq) plus the response's progress."""

    __slots__ = ("middleware", "environ", "server_start_response", "_unclaimed")

    def __init__(
        self,
        middleware: BridgeMiddleware,
        environ: dict[str, Any],
        bridge: setup.Bridge,
        span: trace_api.Span,
        context: Any,
        attributes: dict[str, Any],
        server_start_response: StartResponse,
        nested: bool = False,
    ) -> None:
        scope = RequestScope(bridge, span, attributes, environ)
        super().__init__(span, context, scope, middleware._mode, nested)
        self.middleware = middleware
        self.environ = environ
        self.server_start_response = server_start_response
        # One token: whoever pops it (atomic, whatever the thread) closes the app's body and ends the span.
        self._unclaimed = [True]

    def enter(self) -> tuple[object, Any]:
        """Make the request's context and scope current in this thread; pass the result to ``leave``. (The
        body's ``next()`` and ``close()`` may come from different threads: each call keeps its own tokens.)"""
        return context_api.attach(self.context), scope_module._current.set(self.scope)

    def leave(self, tokens: tuple[object, Any]) -> None:
        otel_token, scope_token = tokens
        scope_module._current.reset(scope_token)
        context_api.detach(otel_token)  # type: ignore[arg-type]

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
        if middleware.captures_response_headers and span.is_recording() and not self.nested:
            merged: dict[str, str] = {}
            for key, value in headers:
                key = key.lower()
                merged[key] = f"{merged[key]},{value}" if key in merged else value
            span.set_attributes(middleware.response_header_attributes(merged))
        if middleware.response_hook is not None:
            middleware.guard.call("response_hook", middleware.response_hook, span, self.environ, status, headers)

    def finish(self, close: Optional[Callable[[], object]], entered: bool = False) -> None:
        """The request is over: call ``close`` (the app's body's ``close()``, in the request's context, made
        current here unless the caller ``entered`` it already) and end the span; only the first call does
        anything. An exception from ``close`` is recorded, then raised to the caller, the span ended all the
        same."""
        if not self._unclaimed:  # the common second call (the server's close() after exhaustion): no raise
            return
        try:
            self._unclaimed.pop()
        except IndexError:  # another thread claimed it in between
            return
        try:
            if close is not None:
                tokens = None if entered else self.enter()
                try:
                    close()
                except BaseException as exc:
                    self.fail(exc)
                    raise
                finally:
                    if tokens is not None:
                        self.leave(tokens)
        finally:
            self._end_span()

    def end(self, end_time: Optional[int] = None) -> None:
        """``finish`` with nothing to close (the app raised, or its body is a list), inlined: it is the list
        body's hot path."""
        unclaimed = self._unclaimed
        if unclaimed:
            try:
                unclaimed.pop()
            except IndexError:
                return
            ServerRequest.end(self, end_time)

    def _end_span(self) -> None:
        ServerRequest.end(self)  # the shared end (span, and what both protocols do when a request is over)

    def wrap(self, result: Iterable[bytes], environ: Mapping[str, Any]) -> Iterable[bytes]:
        try:
            file_wrapper = environ.get("wsgi.file_wrapper")
            if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
                # Hand the server its own object back (sendfile stays possible); its close() ends the span.
                try:
                    result.close = _ClosingHook(result, self)  # type: ignore[attr-defined]
                except Exception:
                    self.end()
                return result
            kind = type(result)
            if kind is list or kind is tuple:
                return _SequenceBody(result, self)  # type: ignore[arg-type]
            if hasattr(kind, "__len__"):
                return _SizedResponseBody(result, self)
        except Exception:
            logger.warning("otel-sentry-bridge: unusual response body; wrapped as a plain iterable", exc_info=True)
        return _ResponseBody(result, self)


def _close_of(body: object) -> Optional[Callable[[], object]]:
    try:
        close = getattr(body, "close", None)
    except Exception:
        logger.warning("otel-sentry-bridge: reading the body's close attribute raised", exc_info=True)
        return None
    return close if callable(close) else None


class _ClosingHook:
    """Replaces a ``wsgi.file_wrapper``'s ``close``: the server's own close, then the span's end (once)."""

    __slots__ = ("_close", "_request")

    def __init__(self, result: Any, request: _Request) -> None:
        self._close = _close_of(result)
        self._request = request

    def __call__(self) -> None:
        self._request.finish(self._close)


class _SequenceBody:
    """A body the app already made (a list or tuple of chunks). The server iterates the list's own iterator
    at C speed, chained to one call that ends the span when the server asks past the last chunk; ``close()``
    ends it if that came first. Nothing of the app runs while it is iterated, so no context is activated.
    ``__iter__`` hands out that one shared iterator, and ``next()`` on the body advances it too."""

    __slots__ = ("_chunks", "_iterator", "_request")

    def __init__(self, chunks: list[bytes] | tuple[bytes, ...], request: _Request) -> None:
        self._chunks = chunks
        self._request = request
        # iter(callable, sentinel): request.end() returns None, the sentinel, so it stops right after the call
        self._iterator: Iterator[bytes] = chain(chunks, iter(request.end, None))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[bytes]:
        return self._iterator

    def __next__(self) -> bytes:
        return next(self._iterator)

    def __len__(self) -> int:
        return len(self._chunks)

    def close(self) -> None:
        request = self._request
        if request._unclaimed:
            request.end()

    def __del__(self) -> None:
        if self._request._unclaimed:
            _dropped(self)


def _dropped(body: _SequenceBody | _ResponseBody) -> None:
    """A body dropped without being exhausted or closed (a test client that only looked at the status): the
    span ends now, as the generator of OpenTelemetry's middleware ends it when it is collected."""
    if body._request._unclaimed:
        try:
            body.close()
        except BaseException:
            logger.debug("otel-sentry-bridge: closing a dropped response body raised", exc_info=True)


class _ResponseBody:
    """The app's body, iterated in the request's context. Exhausted, raising, or closed, whichever comes
    first: the app's ``close()`` is called and the span ends; later ``next()`` calls stop at once without
    touching the app's iterator, later ``close()`` calls do nothing.

    When the bridge calls the app's ``close()`` early (exhausted, or iterating raised) and it raises, the
    exception is recorded at once and raised from the server's own ``close()``, where the server would have
    met it without the bridge (a client that never closes never sees it, as it would never have caused it).
    """

    __slots__ = ("_iterable", "_iterator", "_request", "_done", "_close_errors")

    def __init__(self, iterable: Iterable[bytes], request: _Request) -> None:
        self._iterable = iterable
        self._iterator: Optional[Iterator[bytes]] = None
        self._request = request
        self._done = False
        self._close_errors: Optional[list[BaseException]] = None

    def __iter__(self) -> _ResponseBody:
        return self

    def __next__(self) -> bytes:
        if self._done:
            raise StopIteration
        request = self._request
        tokens = request.enter()
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            chunk = next(self._iterator)
        except StopIteration:
            self._finish_early(tokens)  # exhausted: the app's close() now, not when (or if) the server gets to it
            raise
        except BaseException as exc:
            request.fail(exc)
            self._finish_early(tokens)
            raise
        request.leave(tokens)
        return chunk

    def _finish_early(self, tokens: tuple[object, Any]) -> None:
        """From ``__next__``, the request's context still current (``tokens``): close and end, then leave."""
        self._done = True
        request = self._request
        try:
            request.finish(_close_of(self._iterable), entered=True)
        except BaseException as exc:  # recorded by finish(); the server's close() raises it
            self._close_errors = [exc]
        finally:
            request.leave(tokens)

    def close(self) -> None:
        self._done = True
        errors = self._close_errors
        if errors:
            try:
                error = errors.pop()  # atomic: one server close() raises it, whatever the threads
            except IndexError:
                return
            raise error
        request = self._request
        if request._unclaimed:  # cheap early out; finish() itself decides, atomically
            request.finish(_close_of(self._iterable))

    def __del__(self) -> None:
        if self._request._unclaimed:
            _dropped(self)


class _SizedResponseBody(_ResponseBody):
    """A body with ``len()`` (servers ask it to set Content-Length for one-chunk bodies): answered by the
    app's body, exceptions included. Bodies without ``len()`` get a wrapper without it, so servers that test
    ``hasattr(body, "__len__")`` see what the app returned."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]
