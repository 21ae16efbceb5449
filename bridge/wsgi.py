"""``BridgeMiddleware``: one SERVER span per WSGI request, built on OpenTelemetry's WSGI instrumentation.

The request and response attributes come from ``opentelemetry.instrumentation.wsgi`` (its semantic
conventions are reused, not re-implemented). What this module adds:
- exceptions that escape the app (from the call, from iterating the body, from ``close()``) become
  ``exception`` events with ERROR status and ``error.type``, and the server still sees the very same
  exception;
- the body's ``close()`` is called exactly once whatever happens, and the span ends only when the body
  has been sent or closed, so streaming responses are timed right; ``wsgi.file_wrapper`` objects are
  handed back to the server as they are (so it can still use ``sendfile``);
- guarded user hooks, privacy scrubbing of the request attributes, and the per-request scope.
Nothing the bridge does can raise into the app or the server: its own failures are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Optional
from wsgiref.util import request_uri

from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.wsgi import (
    add_response_attributes,
    collect_request_attributes,
    get_default_span_name,
    wsgi_getter,
)

from bridge import setup
from bridge.httpreq import ServerMiddleware, ServerRequest, warn_untraced
from bridge.scope import RequestScope

__all__ = ["BridgeMiddleware"]

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]


class BridgeMiddleware(ServerMiddleware):
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
        super().__init__(skip=skip, identify_user=identify_user, session_id=session_id, view_name=view_name)
        self.app = app
        self.request_hook = request_hook
        self.response_hook = response_hook

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
        if "url.path" not in attributes:
            # OTel takes url.path from RAW_URI/REQUEST_URI, which wsgiref and others do not set.
            attributes["url.path"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") or "/"
            if environ.get("QUERY_STRING"):
                attributes["url.query"] = environ["QUERY_STRING"]
        name, attributes = self.name_request(bridge, environ, attributes, get_default_span_name(environ))
        if self._capture is not None and self._capture[1]:
            headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
            attributes.update(self.request_header_attributes(headers))
        span, context = self.open_span(bridge, name, attributes, environ, wsgi_getter)
        request = _Request(self, environ, bridge, span, context, attributes, start_response)
        if self.request_hook is not None:
            self.guard.call("request_hook", self.request_hook, span, environ)
        return request


class _Request(ServerRequest):
    """One traced WSGI request: the shared bookkeeping (bridge.httpreq) plus the response's progress."""

    __slots__ = ("middleware", "environ", "server_start_response")

    def __init__(
        self,
        middleware: BridgeMiddleware,
        environ: dict[str, Any],
        bridge: setup.Bridge,
        span: trace_api.Span,
        context: Any,
        attributes: dict[str, Any],
        server_start_response: StartResponse,
    ) -> None:
        super().__init__(span, context, RequestScope(bridge, span, attributes, environ), middleware._mode)
        self.middleware = middleware
        self.environ = environ
        self.server_start_response = server_start_response

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
        if middleware.captures_response_headers and span.is_recording():
            merged: dict[str, str] = {}
            for key, value in headers:
                key = key.lower()
                merged[key] = f"{merged[key]},{value}" if key in merged else value
            span.set_attributes(middleware.response_header_attributes(merged))
        if middleware.response_hook is not None:
            middleware.guard.call("response_hook", middleware.response_hook, span, self.environ, status, headers)

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
