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
- guarded user hooks, privacy scrubbing of the request attributes, and the per-request scope.
Nothing the bridge does can raise into the app or the server: its own failures are logged.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from typing import Any, Callable, Optional
from wsgiref.util import request_uri

from opentelemetry import context as context_api
from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation._semconv import _StabilityMode
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
from bridge.scope import RequestScope
from bridge.sentry.privacy import filter_attributes
from bridge.tracebook import remember as remember_trace

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
    """The stable HTTP conventions by default; ``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup`` adds the old ones."""
    opt_in = {part.strip() for part in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
    return _StabilityMode.HTTP_DUP if "http/dup" in opt_in else _StabilityMode.HTTP


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

    Hooks (each optional and guarded):
    ``skip(environ) -> bool``, ``identify_user(environ) -> str | None`` (``enduser.id``),
    ``session_id(environ) -> str | None`` (``session.id``), ``view_name(environ) -> str | None``
    (a route template such as ``/users/{id}`` becomes ``http.route`` and the span name
    ``"{METHOD} {route}"``; any other name becomes the span name with Sentry source ``component``),
    ``request_hook(span, environ)``, ``response_hook(span, environ, status, headers)``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        skip: Optional[Callable[[dict[str, Any]], bool]] = None,
        identify_user: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
        session_id: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
        view_name: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
        request_hook: Optional[Callable[[trace_api.Span, dict[str, Any]], None]] = None,
        response_hook: Optional[Callable[[trace_api.Span, dict[str, Any], str, list[tuple[str, str]]], None]] = None,
    ) -> None:
        self.app = app
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

    # -- the WSGI call ------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = self._begin(environ, start_response)
        except Exception:
            _warn_untraced()
            request = None
        if request is None:
            return self.app(environ, start_response)
        tokens = request.activate()
        try:
            result = self.app(environ, request.start_response)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit...: the context must not stay attached
            request.deactivate(tokens)
            request.fail(exc)
            request.end()
            raise
        request.deactivate(tokens)
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
        if "url.path" not in attributes:
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
        if self._capture is not None and self._capture[1]:
            sanitize, request_headers, _ = self._capture
            headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
            attributes.update(sanitize.sanitize_header_values(headers, request_headers, normalise_request_header_name))

        parent = context_api.get_current()
        if trace_api.get_current_span(parent).get_span_context().is_valid:
            kind = SpanKind.INTERNAL  # already inside a traced request (nested middleware)
        else:
            kind = SpanKind.SERVER
            parent = propagate.extract(environ, context=parent, getter=wsgi_getter)
        span = bridge.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        if not span.is_recording():  # no processor sees it; its errors still need the incoming DSC
            remember_trace(span, parent, track=False)
        request = _Request(
            self, environ, bridge, span, trace_api.set_span_in_context(span, parent), attributes, start_response
        )
        if self.request_hook is not None:
            self.guard.call("request_hook", self.request_hook, span, environ)
        return request


class _Request:
    """One traced request: its span, context, scope, and the response's progress.

    The span ends once, at the first of: the body is exhausted, iterating it raises, ``close()`` is called
    (or the app's call raised: no body). That first event also calls the app's ``close()``, once, whichever
    thread it comes from (a server may close from another thread than the one that iterated).
    """

    __slots__ = (
        "middleware",
        "environ",
        "span",
        "context",
        "scope",
        "server_start_response",
        "started",
        "_unclaimed",
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
        # One token: whoever pops it (atomic, whatever the thread) closes the app's body and ends the span.
        self._unclaimed = [True]

    def activate(self) -> tuple[object, Any]:
        """Make the request's context and scope current in this thread; pass the result to ``deactivate``."""
        return context_api.attach(self.context), scope_module._current.set(self.scope)

    def deactivate(self, tokens: tuple[object, Any]) -> None:
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
        add_response_attributes(span, status, headers, {}, middleware._mode)
        self.scope.mark_failed()  # a framework that rendered a recorded failure: its type, not "500"
        capture = middleware._capture
        if capture is not None and capture[2] and span.is_recording():
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
            if span.is_recording() and not self.started:
                span.set_attribute("http.response.status_code", 500)
                if self.middleware._mode is _StabilityMode.HTTP_DUP:
                    span.set_attribute("http.status_code", 500)
            self.scope.fail(exc)  # once per exception: a framework helper may have recorded it already
        except Exception:
            logger.warning("otel-sentry-bridge: could not record an exception", exc_info=True)

    def finish(self, close: Optional[Callable[[], object]]) -> None:
        """The request is over: call ``close`` (the app's body's ``close()``, in the request's context) and
        end the span; only the first call does anything. An exception from ``close`` is recorded, then
        raised to the caller (the server), the span ended all the same."""
        if not self._unclaimed:  # the common second call (the server's close() after exhaustion): no raise
            return
        try:
            self._unclaimed.pop()
        except IndexError:  # another thread claimed it in between
            return
        try:
            if close is not None:
                tokens = self.activate()
                try:
                    close()
                except BaseException as exc:
                    self.fail(exc)
                    raise
                finally:
                    self.deactivate(tokens)
        finally:
            self._end_span()

    def end(self) -> None:
        """``finish`` with nothing to close (the app raised, or its body is a list), inlined: it is the list
        body's hot path."""
        unclaimed = self._unclaimed
        if unclaimed:
            try:
                unclaimed.pop()
            except IndexError:
                return
            self._end_span()

    def _end_span(self) -> None:
        try:
            self.span.end()
        except Exception:
            logger.warning("otel-sentry-bridge: could not end a span", exc_info=True)

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
        tokens = request.activate()
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            chunk = next(self._iterator)
        except StopIteration:
            request.deactivate(tokens)
            self._finish_early()  # exhausted: the app's close() now, not when (or if) the server gets to it
            raise
        except BaseException as exc:
            request.fail(exc)
            request.deactivate(tokens)
            self._finish_early()
            raise
        request.deactivate(tokens)
        return chunk

    def _finish_early(self) -> None:
        self._done = True
        try:
            self._request.finish(_close_of(self._iterable))
        except BaseException as exc:  # recorded by finish(); the server's close() raises it
            self._close_errors = [exc]

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
