"""Django: wrap ``application`` in your project's ``wsgi.py``, and name routes with one middleware.

``wsgi.py``::

    application = instrument_application(get_wsgi_application())

``asgi.py`` (Django under uvicorn, hypercorn or daphne; a Channels ``ProtocolTypeRouter`` too)::

    application = instrument_asgi_application(get_asgi_application())

``settings.py`` (first, so it runs before any middleware's ``process_view`` can answer)::

    MIDDLEWARE = ["bridge.frameworks.django.RouteMiddleware", ...]

- :func:`instrument_application` wraps the WSGI handler in :class:`~bridge.BridgeMiddleware` (which
  closes every response, so Django's ``request_finished`` fires for every request) and connects
  ``got_request_exception``: Django sends it, inside its exception handler, for every exception it turns
  into a 500, whatever ``DEBUG`` says. Exceptions Django answers with a 4xx of its own (``Http404``,
  ``PermissionDenied``, ``SuspiciousOperation`` such as ``DisallowedHost`` for a bad Host header) do not
  send it and are not recorded as failures.
- :class:`RouteMiddleware` names the span after ``request.resolver_match.route``, the full route
  through every ``include()``: ``users/<int:user_id>`` → ``GET /users/{user_id}``; a ``re_path`` regex
  ``^users/(?P<user_id>[0-9]+)$`` → ``GET /users/{user_id}``.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Callable

from bridge.frameworks import angle_params, rooted
from bridge.scope import fail_request, set_route
from bridge.wsgi import BridgeMiddleware, WSGIApp

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["RouteMiddleware", "instrument_application", "instrument_asgi_application", "route_template"]

logger = logging.getLogger(__name__)
DISPATCH_UID = "otel_sentry_bridge.got_request_exception"
ROUTE_MIDDLEWARE = f"{__name__}.RouteMiddleware"


def instrument_application(application: WSGIApp, **hooks: Any) -> BridgeMiddleware:
    """``application`` (Django's WSGI handler) wrapped in BridgeMiddleware; ``hooks`` go to it."""
    from django.conf import settings
    from django.core.signals import got_request_exception

    got_request_exception.connect(_record_failure, dispatch_uid=DISPATCH_UID)
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


def _record_failure(sender: Any, request: Any = None, **extra: Any) -> None:
    # Django sends the signal from inside its `except` block: the exception is the one being handled.
    exc = sys.exc_info()[1]
    if exc is not None:
        fail_request(exc)


class RouteMiddleware:
    """Names the request's span after the resolved route; changes nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> None:
        try:
            match = request.resolver_match
            if match is not None and match.route:
                set_route(route_template(match.route))
        except Exception:
            logger.warning("otel-sentry-bridge: could not name the Django route", exc_info=True)
