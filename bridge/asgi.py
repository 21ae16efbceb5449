"""``BridgeASGIMiddleware``: one SERVER span per ASGI HTTP request or WebSocket connection.

The request and response attributes come from ``opentelemetry.instrumentation.asgi`` (the optional
``asgi`` extra; imported when a middleware is made), the bookkeeping shared with WSGI from
``bridge.httpreq``. What this module adds for ASGI:

- the span of an HTTP request ends when the app returns, timed to its last body message (a streaming
  response is timed to its last chunk; an exception raised after the response went, by Starlette's error
  middleware or a background task, is still recorded on the request's span); a client that disconnects
  ends it with what was sent;
- routes from Starlette and FastAPI (the matched route's path template, read from the scope the app
  routed), from Django's ASGI handler (``bridge.frameworks.django.RouteMiddleware``, as for WSGI) and from
  a ``view_name(scope)`` hook, asked when the response starts (after routing);
- an exception escaping the app: ``exception`` event, ERROR, ``error.type``, 500 when no response had
  started, Sentry mechanism ``asgi``; the server gets the very same exception. A cancelled request
  (``CancelledError``: the client went away, the server shuts down) is no error;
- WebSocket connections: one span per connection, ended when the app returns; what escapes the app's
  connect, receive and disconnect handlers (Channels consumers) is recorded the same way;
- lifespan (and any other scope type) passes through untraced; at the server's lifespan shutdown the
  bridge flushes (uvicorn's graceful shutdown ends without at-exit handlers); the ASGI scope and messages are read,
  never modified; a scope the bridge cannot read is served untraced with a rate-limited warning;
- FastAPI's own request telemetry (FastAPI 0.16x starts a SERVER span of its own, from the headers
  only) is skipped for the requests the bridge traces, as FastAPI does under OpenTelemetry's ASGI
  middleware: the app gets a copy of the scope that says so;
- OpenTelemetry's per-message ``send``/``receive`` spans are off by default (``message_spans=True``
  turns them on); OpenTelemetry's ``OpenTelemetryMiddleware`` constructor arguments are accepted.

The scope is per request through context variables: concurrent requests on one event loop never see
each other's tags, and tasks the handler starts (which copy the context) report to their request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Callable, Optional, Union

from opentelemetry import trace as trace_api
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.trace import SpanKind
from opentelemetry.util.http import ExcludeList, SanitizeValue, parse_excluded_urls

from bridge import setup
from bridge.frameworks import brace_params
from bridge.httpreq import PRIVATE_HEADERS, ServerMiddleware, ServerRequest, in_traced_request, warn_untraced
from bridge.metrics import ASGI_METER_NAME, ServerMetrics
from bridge.scope import RequestScope
from bridge.version import __version__

__all__ = ["BridgeASGIMiddleware", "MECHANISM_ATTRIBUTE", "SCOPE_NAME"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
SpanHook = Callable[..., None]

SCOPE_NAME = "bridge.asgi"  # the instrumentation scope of the spans this middleware starts
# Set on a request's span when an exception escapes it: the Sentry error's mechanism type.
MECHANISM_ATTRIBUTE = "sentry.mechanism"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("latin-1")
        except Exception:  # pragma: no cover - latin-1 decodes any bytes
            return repr(value)
    return str(value)


def _merged_headers(raw: Any) -> dict[str, str]:
    """ASGI ``[(name, value), ...]`` bytes pairs as ``{name: "v1,v2"}`` (lower-case names)."""
    merged: dict[str, str] = {}
    for name, value in raw or ():
        key, text = _text(name).lower(), _text(value)
        merged[key] = f"{merged[key]},{text}" if key in merged else text
    return merged


def content_length(headers: Mapping[str, str]) -> Optional[int]:
    """The ``content-length`` of merged headers as a byte count; None when absent or not one number."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        size = int(value)
    except ValueError:
        return None
    return size if size >= 0 else None


def _response_content_length(raw: Any) -> Optional[int]:
    """``content-length`` from raw ASGI response headers, without merging them all (most responses)."""
    for name, value in raw or ():
        if len(name) == 14 and _text(name).lower() == "content-length":
            return content_length({"content-length": _text(value)})
    return None


class _HeaderEnviron(Mapping[str, str]):
    """The ASGI request's headers shown as a WSGI environ's (``HTTP_USER_AGENT``...), for the Sentry error's
    ``request.headers``. Read only when an error or message is recorded, never on the request's hot path."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    def _pairs(self) -> Iterator[tuple[str, str]]:
        for name, value in self._scope.get("headers") or ():
            key = _text(name).upper().replace("-", "_")
            yield (key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key), _text(value)

    def __getitem__(self, key: str) -> str:
        for name, value in self._pairs():
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs())

    def __len__(self) -> int:
        return sum(1 for _ in self._pairs())


class _AsgiScope(RequestScope):
    """The request scope of an ASGI request: a failure it records is reported with mechanism ``asgi``
    (also when a framework helper records it, as Django's does for the exceptions it turns into a 500)."""

    __slots__ = ()

    def fail(self, exc: BaseException) -> bool:
        self.set_attribute(MECHANISM_ATTRIBUTE, "asgi")
        return super().fail(exc)


def route_template(scope: Mapping[str, Any]) -> Optional[str]:
    """The matched route's template from a scope Starlette or FastAPI routed (``scope["route"]``), behind
    the mount's ``root_path``: ``/users/{user_id}``; None when no route matched (404, 405) or no router."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template or not isinstance(template, str):
        return None
    root = scope.get("root_path") or ""
    app_root = scope.get("app_root_path")
    if isinstance(app_root, str) and isinstance(root, str) and root.startswith(app_root):
        root = root[len(app_root) :]  # the server's own --root-path is not part of the route
    return brace_params(f"{root}{template}" if isinstance(root, str) else template)


def _native_fastapi(app: Any) -> bool:
    """Whether ``app`` is (or wraps, through ``.app`` links) a FastAPI app with its own OpenTelemetry
    request telemetry (FastAPI 0.16x: a SERVER span of its own per request, started from the headers only)."""
    seen: set[int] = set()
    while app is not None and id(app) not in seen and len(seen) < 32:
        seen.add(id(app))
        if hasattr(app, "_native_telemetry") and type(app).__module__.startswith("fastapi"):
            return True
        app = getattr(app, "app", None)
    return False


# FastAPI skips its native request telemetry for a scope that holds this key (as it does under
# OpenTelemetry's own ASGI middleware): the bridge's span is the request's one SERVER span.
_FASTAPI_TELEMETRY_KEY = "fastapi.telemetry"


class BridgeASGIMiddleware(ServerMiddleware):
    """Wrap an ASGI app: ``app = BridgeASGIMiddleware(app)``. Uses the configuration of ``bridge.init()``.

    The bridge's hooks (each optional and guarded; ``scope`` is the ASGI scope, to read, not to change):
    ``skip(scope) -> bool``, ``identify_user(scope)``, ``session_id(scope)``, ``view_name(scope)`` (asked
    when the response starts, after the app routed; a template such as ``/users/{id}`` becomes
    ``http.route``, any other name the span name with Sentry source ``component``), ``request_hook(span,
    scope)``, ``response_hook(span, scope, message)`` (with the ``http.response.start`` message).
    ``message_spans``: OpenTelemetry's internal span per ``send``/``receive`` message (off).

    OpenTelemetry's ``OpenTelemetryMiddleware`` arguments, with its meaning: ``excluded_urls`` (beside the
    bridge's ``excluded_urls`` option), ``default_span_details(scope) -> (name, attributes)``,
    ``server_request_hook(span, scope)``, ``client_request_hook(span, scope, message)`` and
    ``client_response_hook(span, scope, message)`` (called with the message span when message spans are
    on, else with the request's span), ``tracer_provider``/``tracer`` (spans go there instead of the
    bridge's provider), ``meter_provider``/``meter`` (the HTTP server metrics go there instead of the bridge's
    metrics leg),
    ``http_capture_headers_server_request``/``_response``/``_sanitize_fields`` (instead of the bridge's
    capture options), ``exclude_spans`` (``["receive"]``, ``["send"]``: given at all, it turns message
    spans on except those).
    """

    meter_name = ASGI_METER_NAME  # the metrics' instrumentation scope, as OpenTelemetry's middleware

    def __init__(
        self,
        app: Any,
        *,
        skip: Optional[Callable[[Scope], bool]] = None,
        identify_user: Optional[Callable[[Scope], Optional[str]]] = None,
        session_id: Optional[Callable[[Scope], Optional[str]]] = None,
        view_name: Optional[Callable[[Scope], Optional[str]]] = None,
        request_hook: Optional[SpanHook] = None,
        response_hook: Optional[SpanHook] = None,
        message_spans: bool = False,
        excluded_urls: Union[ExcludeList, str, None] = None,
        default_span_details: Optional[Callable[[Scope], tuple[str, dict[str, Any]]]] = None,
        server_request_hook: Optional[SpanHook] = None,
        client_request_hook: Optional[SpanHook] = None,
        client_response_hook: Optional[SpanHook] = None,
        tracer_provider: Optional[trace_api.TracerProvider] = None,
        meter_provider: Any = None,
        tracer: Optional[trace_api.Tracer] = None,
        meter: Any = None,
        http_capture_headers_server_request: Optional[list[str]] = None,
        http_capture_headers_server_response: Optional[list[str]] = None,
        http_capture_headers_sanitize_fields: Optional[list[str]] = None,
        exclude_spans: Optional[Sequence[str]] = None,
    ) -> None:
        # OpenTelemetry's helpers come with the ``asgi`` extra; asgiref too (ASGI 2 apps made single-callable).
        from asgiref.compatibility import guarantee_single_callable
        from opentelemetry.instrumentation import asgi as otel_asgi

        super().__init__(skip=skip, identify_user=identify_user, session_id=session_id, view_name=None)
        self.app: ASGIApp = guarantee_single_callable(app)  # type: ignore[no-untyped-call]
        self._fastapi = _native_fastapi(app)
        self.view_name_hook = view_name
        self.request_hooks = [hook for hook in (request_hook, server_request_hook) if hook is not None]
        self.response_hook = response_hook
        self.client_request_hook = client_request_hook
        self.client_response_hook = client_response_hook
        on = message_spans or exclude_spans is not None
        excluded = set(exclude_spans or ())
        self.receive_spans = on and "receive" not in excluded
        self.send_spans = on and "send" not in excluded
        self.wraps_receive = self.receive_spans or client_request_hook is not None
        self.own_excluded = parse_excluded_urls(excluded_urls) if isinstance(excluded_urls, str) else excluded_urls
        self.default_span_details = default_span_details
        self.meter_provider = meter_provider  # for the HTTP server metrics (bridge.httpreq.ServerRequest.end)
        self.meter = meter
        self._given_metrics: Optional[ServerMetrics] = None
        self._given_tracer = tracer
        if tracer is None and tracer_provider is not None:
            self._given_tracer = tracer_provider.get_tracer(SCOPE_NAME, __version__)
        self.tracer: trace_api.Tracer = trace_api.NoOpTracer()
        self._capture_args = (
            http_capture_headers_server_request,
            http_capture_headers_server_response,
            http_capture_headers_sanitize_fields,
        )
        self._collect: Callable[..., dict[str, Any]] = otel_asgi.collect_request_attributes
        self._default_details: Callable[..., tuple[str, dict[str, Any]]] = otel_asgi.get_default_span_details
        self._url: Callable[..., tuple[Any, Any, str]] = otel_asgi.get_host_port_url_tuple
        self._set_status_code: Callable[..., None] = otel_asgi.set_status_code

    def _settings(self, bridge: setup.Bridge) -> None:
        super()._settings(bridge)
        if self._given_tracer is not None:
            self.tracer = self._given_tracer
        elif bridge.provider is not None:
            self.tracer = bridge.provider.get_tracer(SCOPE_NAME, __version__)
        request, response, sanitize = self._capture_args
        if request is not None or response is not None or sanitize is not None:
            options = bridge.options
            fields = list(sanitize if sanitize is not None else options.sanitize_headers)
            if not options.send_default_pii:
                fields += [f"^{re.escape(name)}$" for name in PRIVATE_HEADERS]
            self._capture = (
                SanitizeValue(fields),
                list(request if request is not None else options.capture_request_headers),
                list(response if response is not None else options.capture_response_headers),
            )

    def server_metrics(self, bridge: setup.Bridge) -> Optional[ServerMetrics]:
        """A ``meter`` given is used as it is (as OpenTelemetry's middleware does); else as for WSGI."""
        if self.meter is None:
            return super().server_metrics(bridge)
        if self._given_metrics is None or self._given_metrics.mode is not self._mode:
            self._given_metrics = ServerMetrics(self.meter, self._mode)
        return self._given_metrics

    # -- the ASGI call ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request: Optional[_AsgiRequest] = None
        try:
            kind = scope["type"]
        except Exception:
            kind = None
            warn_untraced()
        if kind == "lifespan":
            return await _lifespan(self.app, scope, receive, send)
        if kind == "http" or kind == "websocket":
            try:
                traced = scope
                if self._fastapi and _FASTAPI_TELEMETRY_KEY not in scope:
                    traced = {**scope, _FASTAPI_TELEMETRY_KEY: None}  # a copy: the server's scope stays as it was
                request = self._begin(traced, kind, receive, send)
            except Exception:
                warn_untraced()
        if request is None:  # other scope types, excluded, skipped, not configured, or a scope we cannot read
            return await self.app(scope, receive, send)
        request.activate()
        try:
            await self.app(request.asgi_scope, request.receive if self.wraps_receive else receive, request.send)
        except BaseException as exc:
            request.escaped(exc)
            raise
        finally:
            request.deactivate()
            request.finish()

    def _begin(self, scope: Scope, kind: str, receive: Receive, send: Send) -> Optional[_AsgiRequest]:
        bridge = self._active()
        if bridge is None:
            return None
        if self._skipped(scope, lambda: str(self._url(scope)[2])):
            return None
        if self.own_excluded is not None and self.own_excluded.url_disabled(str(self._url(scope)[2])):
            return None
        attributes: dict[str, Any] = self._collect(scope, self._mode)
        if self.default_span_details is not None:
            details = self.guard.call("default_span_details", self.default_span_details, scope)
            name, extra = details if details else self._default_details(scope)
            attributes.update(extra or {})
        else:
            name = self._default_details(scope)[0]
        if kind == "websocket":
            if self.default_span_details is None:
                name = str(scope.get("path") or "/")  # no method to name it by (OpenTelemetry's says "HTTP")
            attributes["sentry.op"] = "websocket.server"  # as sentry-sdk names them
            attributes["sentry.transaction_source"] = "url"
        name, attributes = self.name_request(bridge, scope, attributes, name)
        headers = _merged_headers(scope.get("headers"))  # decoded once: the propagators look up several
        if self._capture is not None and self._capture[1]:
            attributes.update(self.request_header_attributes(headers))
        nested = in_traced_request()
        span, context = self.open_span(bridge, name, attributes, headers, default_getter, self.tracer, nested)
        request_scope = _AsgiScope(bridge, span, attributes, _HeaderEnviron(scope))
        request = _AsgiRequest(
            self, scope, kind == "websocket", request_scope, span, context, name, receive, send, nested
        )
        for hook in self.request_hooks:
            self.guard.call("request_hook", hook, span, scope)
        if kind == "http":  # as OpenTelemetry's middleware: HTTP requests are measured, WebSockets not
            self.measure(request, bridge, attributes)
            if request.measure is not None:
                request.measure.request_size = content_length(headers)
        return request


async def _flush_at_shutdown() -> None:
    """Export what the bridge holds, off the event loop, within ``shutdown_timeout``; never raises."""
    try:
        bridge = setup.active()
        if bridge is not None:
            timeout = bridge.options.shutdown_timeout
            await asyncio.get_running_loop().run_in_executor(None, setup.flush, timeout)
    except Exception:
        logger.warning("otel-sentry-bridge: could not flush at the server's shutdown", exc_info=True)


async def _lifespan(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Lifespan passes through untraced; the bridge only flushes when the server announces its shutdown.

    Why: uvicorn ends a graceful shutdown by raising the signal it caught again, with the default handler,
    so no at-exit handler runs: what the bridge still held would be lost. An app that does not speak
    lifespan at all (Django's ASGI handler, a Channels router: they raise before receiving anything) gets
    it answered for it, so that the flush still happens (the server would otherwise carry on without
    lifespan, as it does here too).
    """
    received = False

    async def watched_receive() -> Message:
        nonlocal received
        received = True
        return await receive()

    async def watched_send(message: Message) -> None:
        if message.get("type") == "lifespan.shutdown.complete":
            await _flush_at_shutdown()
        await send(message)

    try:
        await app(scope, watched_receive, watched_send)
    except Exception:
        if received:
            raise  # a real startup or shutdown failure: the server decides
        logger.debug("otel-sentry-bridge: the app does not speak lifespan; answering it", exc_info=True)
        while True:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await _flush_at_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _AsgiRequest(ServerRequest):
    """One traced ASGI request or WebSocket connection."""

    __slots__ = (
        "middleware",
        "asgi_scope",
        "websocket",
        "name",
        "server_receive",
        "server_send",
        "trailers",
        "named",
        "last_byte",
    )

    def __init__(
        self,
        middleware: BridgeASGIMiddleware,
        asgi_scope: Scope,
        websocket: bool,
        scope: RequestScope,
        span: trace_api.Span,
        context: Any,
        name: str,
        server_receive: Receive,
        server_send: Send,
        nested: bool = False,
    ) -> None:
        super().__init__(span, context, scope, middleware._mode, nested)
        self.middleware = middleware
        self.asgi_scope = asgi_scope
        self.websocket = websocket
        self.name = name
        self.server_receive = server_receive
        self.server_send = server_send
        self.trailers = False
        self.named = False
        self.last_byte: Optional[int] = None

    # -- receive and send, as the app calls them ----------------------------------------------------
    async def receive(self) -> Message:
        middleware = self.middleware
        if middleware.receive_spans:
            with middleware.tracer.start_as_current_span(
                f"{self.name} {'websocket' if self.websocket else 'http'} receive", kind=SpanKind.INTERNAL
            ) as span:
                message = await self.server_receive()
                self._received(span, message)
            return message
        message = await self.server_receive()
        if middleware.client_request_hook is not None:
            self._received(self.span, message)
        return message

    def _received(self, span: trace_api.Span, message: Message) -> None:
        middleware = self.middleware
        if middleware.client_request_hook is not None:
            middleware.guard.call("client_request_hook", middleware.client_request_hook, span, self.asgi_scope, message)
        if span is not self.span and span.is_recording():
            try:
                span.set_attribute("asgi.event.type", str(message.get("type")))
            except Exception:
                logger.debug("otel-sentry-bridge: unreadable ASGI message", exc_info=True)

    async def send(self, message: Message) -> None:
        middleware = self.middleware
        if middleware.send_spans:
            with middleware.tracer.start_as_current_span(
                f"{self.name} {'websocket' if self.websocket else 'http'} send", kind=SpanKind.INTERNAL
            ) as span:
                await self._send(message, span)
            return
        await self._send(message, self.span)

    async def _send(self, message: Message, hook_span: trace_api.Span) -> None:
        final = False
        try:
            final = self._on_send(message, hook_span)
        except Exception:
            logger.warning("otel-sentry-bridge: could not record an ASGI message", exc_info=True)
        await self.server_send(message)
        if final:
            self.last_byte = time.time_ns()  # the span ends when the app returns, timed to this

    def _on_send(self, message: Message, hook_span: trace_api.Span) -> bool:
        """Record what ``message`` says; returns whether it is the response's last."""
        middleware = self.middleware
        kind = message.get("type")
        if middleware.client_response_hook is not None:
            middleware.guard.call(
                "client_response_hook", middleware.client_response_hook, hook_span, self.asgi_scope, message
            )
        if hook_span is not self.span and hook_span.is_recording():
            hook_span.set_attribute("asgi.event.type", str(kind))
        if kind == "http.response.body":
            return not self.trailers and not message.get("more_body", False)
        if kind == "http.response.pathsend":  # the ASGI extension: the whole body in one message
            return True
        if kind == "http.response.start":
            self._response_started(message)
        elif kind == "http.response.trailers":
            return self.trailers and not message.get("more_trailers", False)
        elif kind == "websocket.accept":
            self.started = True
            self.name_route()
        return False

    def _response_started(self, message: Message) -> None:
        self.started = True
        self.trailers = bool(message.get("trailers"))
        status = message.get("status")
        self.status_code = status if isinstance(status, int) else None
        middleware = self.middleware
        span = self.span
        self.name_route()
        measure = self.measure
        if measure is not None:
            measure.response_size = _response_content_length(message.get("headers"))
        if measure is not None or span.is_recording():  # the metrics take the status code and error.type
            middleware._set_status_code(
                span, message.get("status"), None if measure is None else measure.response, middleware._mode
            )
        if span.is_recording() and middleware.captures_response_headers:
            span.set_attributes(middleware.response_header_attributes(_merged_headers(message.get("headers"))))
        self.scope.mark_failed()  # a framework that rendered a recorded failure: its type, not "500"
        if middleware.response_hook is not None:
            middleware.guard.call("response_hook", middleware.response_hook, span, self.asgi_scope, message)

    # -- naming -------------------------------------------------------------------------------------
    def name_route(self) -> None:
        """Name the request after its route, once the app has routed: the ``view_name`` hook, else the
        Starlette/FastAPI route; a framework helper (Django's) may have named it already."""
        if self.named:
            return
        self.named = True
        try:
            hook = self.middleware.view_name_hook
            view = self.middleware.guard.call("view_name", hook, self.asgi_scope) if hook is not None else None
            if view:
                view = str(view)
                if not view.startswith("/"):
                    self.scope.set_attribute("sentry.transaction_source", "component")
                    if self.span.is_recording():
                        self.span.update_name(view)
                    return
            route = view or route_template(self.asgi_scope)
            if route:
                self._set_route(route)
        except Exception:
            logger.warning("otel-sentry-bridge: could not name the ASGI route", exc_info=True)

    def _set_route(self, route: str) -> None:
        if not self.websocket:
            self.scope.set_route(route)
            return
        self.scope.set_attribute("http.route", route)  # no method: the span is named after the route alone
        self.scope.set_attribute("sentry.transaction_source", "route")
        if self.span.is_recording():
            self.span.update_name(route)

    # -- the end ------------------------------------------------------------------------------------
    def escaped(self, exc: BaseException) -> None:
        """An exception left the app (it goes on to the server): record it, unless it is a cancellation."""
        if isinstance(exc, asyncio.CancelledError):
            return  # the client went away or the server is shutting down: no bug of the app
        self.name_route()  # the error names its transaction: routed already when the app raised late
        self.fail(exc)

    def finish(self) -> None:
        """The app returned or raised: end the span, timed to the last body message when there was one."""
        try:
            self.name_route()
        finally:
            self.end(self.last_byte)
