"""Django: one middleware names routes, and traces requests no WSGI wrapper traced; ``wsgi.py`` optional.

``settings.py`` (first, so it runs before any other middleware)::

    MIDDLEWARE = ["bridge.frameworks.django.RouteMiddleware", ...]

``wsgi.py`` (optional: times the whole WSGI exchange, the server's writes included)::

    application = instrument_application(get_wsgi_application())

``asgi.py`` (Django under uvicorn, hypercorn or daphne; a Channels ``ProtocolTypeRouter`` too)::

    application = instrument_asgi_application(get_asgi_application())

- :class:`RouteMiddleware` names the span after ``request.resolver_match.route``, the full route
  through every ``include()``: ``users/<int:user_id>`` → ``GET /users/{user_id}``; a ``re_path`` regex
  ``^users/(?P<user_id>[0-9]+)$`` → ``GET /users/{user_id}``. When no WSGI span exists for the request
  (Django's test ``Client``, ``runserver`` with an unwrapped ``wsgi.py``; not under ASGI), it makes the
  request's span itself, with the same attributes, hooks and privacy rules as
  :class:`~bridge.BridgeMiddleware`; the span ends when the response is closed (the test client and every
  WSGI server close it) or, for a streaming response, when its content is exhausted or raises. With both
  present there is one span per request: the WSGI wrapper's.
- :func:`instrument_application` wraps the WSGI handler in :class:`~bridge.BridgeMiddleware` (which
  closes every response, so Django's ``request_finished`` fires for every request).
- Either connects ``got_request_exception``: Django sends it, inside its exception handler, for every
  exception it turns into a 500, whatever ``DEBUG`` says. Exceptions Django answers with a 4xx of its own
  (``Http404``, ``PermissionDenied``, ``SuspiciousOperation`` such as ``DisallowedHost`` for a bad Host
  header) do not send it and are not recorded as failures.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from bridge.frameworks import angle_params, rooted
from bridge.scope import current_scope, fail_request, set_route
from bridge.wsgi import BridgeMiddleware, WSGIApp, _Request

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["RouteMiddleware", "instrument_application", "instrument_asgi_application", "route_template"]

logger = logging.getLogger(__name__)
DISPATCH_UID = "otel_sentry_bridge.got_request_exception"
ROUTE_MIDDLEWARE = f"{__name__}.RouteMiddleware"


def instrument_application(application: WSGIApp, **hooks: Any) -> BridgeMiddleware:
    """``application`` (Django's WSGI handler) wrapped in BridgeMiddleware; ``hooks`` go to it."""
    from django.conf import settings

    _connect_failures()
    if ROUTE_MIDDLEWARE not in getattr(settings, "MIDDLEWARE", ()):
        logger.info("otel-sentry-bridge: add %r to MIDDLEWARE to name transactions after routes", ROUTE_MIDDLEWARE)
    return BridgeMiddleware(application, **hooks)


def instrument_asgi_application(application: Any, **hooks: Any) -> Any:
    """``application`` (Django's ASGI handler, or a Channels ``ProtocolTypeRouter`` around it) wrapped in
    ``bridge.BridgeASGIMiddleware``, with the same signal and route names as for WSGI; ``hooks`` go to it."""
    from django.core.signals import got_request_exception

    from bridge.asgi import BridgeASGIMiddleware

    got_request_exception.connect(_record_failure, dispatch_uid=DISPATCH_UID)
    return BridgeASGIMiddleware(application, **hooks)


def route_template(route: str) -> str:
    """A resolver route (``path()`` converters and/or ``re_path()`` named groups) as ``/users/{user_id}``."""
    route = angle_params(_named_groups(route))
    if route.startswith("^"):
        route = route[1:]
    for end in ("\\Z", "$"):
        if route.endswith(end):
            route = route[: -len(end)]
    return rooted(route)


def _named_groups(pattern: str) -> str:
    """Each regex group ``(?P<name>...)`` (nested parentheses, classes and escapes included) → ``{name}``."""
    out: list[str] = []
    index = 0
    while True:
        start = pattern.find("(?P<", index)
        if start < 0:
            out.append(pattern[index:])
            return "".join(out)
        close = pattern.find(">", start)
        if close < 0:
            out.append(pattern[index:])
            return "".join(out)
        out.append(pattern[index:start])
        out.append("{" + pattern[start + 4 : close] + "}")
        index = _group_end(pattern, close + 1)


def _group_end(pattern: str, index: int) -> int:
    """The index just after the ``)`` closing the group whose body starts at ``index``."""
    depth, in_class = 1, False
    while index < len(pattern) and depth:
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        index += 1
    return index


def _connect_failures() -> None:
    from django.core.signals import got_request_exception

    got_request_exception.connect(_record_failure, dispatch_uid=DISPATCH_UID)  # the same uid: connected once


def _record_failure(sender: Any, request: Any = None, **extra: Any) -> None:
    # Django sends the signal from inside its `except` block: the exception is the one being handled.
    exc = sys.exc_info()[1]
    if exc is not None:
        fail_request(exc)


class RouteMiddleware:
    """Names the request's span after the resolved route; makes that span when no WSGI wrapper did."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # Its app is never called: only its request-span making (_begin) and settings are used.
        self._spans = BridgeMiddleware(_never_called)
        _connect_failures()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        traced = self._traced(request) if current_scope() is None else None
        if traced is None:
            return self.get_response(request)
        tokens = traced.enter()
        try:
            response = self.get_response(request)
        except BaseException as exc:  # Django turns exceptions into responses; this one got past it
            traced.leave(tokens)
            traced.fail(exc)
            traced.end()
            raise
        traced.leave(tokens)
        _end_with(response, traced)
        return response

    def _traced(self, request: HttpRequest) -> Optional[_Request]:
        """A new span for this request, or None (a WSGI span exists, ASGI, tracing off, or a failure)."""
        try:
            from django.core.handlers.wsgi import WSGIRequest

            if not isinstance(request, WSGIRequest):
                return None  # ASGI: the ASGI helper's business
            return self._spans._begin(request.META, _ignore_start_response)
        except Exception:
            logger.warning("otel-sentry-bridge: could not start a span for this Django request", exc_info=True)
            return None

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> None:
        try:
            match = request.resolver_match
            if match is not None and match.route:
                set_route(route_template(match.route))
        except Exception:
            logger.warning("otel-sentry-bridge: could not name the Django route", exc_info=True)


def _never_called(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    raise RuntimeError("RouteMiddleware's BridgeMiddleware is never called as an app")  # pragma: no cover


def _ignore_start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
    return None


def _end_with(response: HttpResponseBase, traced: _Request) -> None:
    """Record the response; end the span when it is closed (Django's test client and every WSGI server
    close it) or, streaming, when its content is exhausted or raises (iterated in the request's context)."""
    try:
        traced.start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
        if getattr(response, "streaming", False) and not getattr(response, "is_async", False):
            content = response.streaming_content  # type: ignore[attr-defined]
            response.streaming_content = traced.wrap(content, {})  # type: ignore[attr-defined]
        response.close = _ClosingResponse(response.close, traced)  # type: ignore[method-assign]
    except Exception:
        logger.warning("otel-sentry-bridge: could not follow this Django response; span ended now", exc_info=True)
        traced.end()


class _ClosingResponse:
    """The response's own ``close()`` (Django's ``request_finished`` included), then the span's end."""

    __slots__ = ("_close", "_traced")

    def __init__(self, close: Callable[[], None], traced: _Request) -> None:
        self._close = close
        self._traced = traced

    def __call__(self) -> None:
        try:
            self._close()
        except BaseException as exc:
            self._traced.fail(exc)
            raise
        finally:
            self._traced.end()
