"""Pyramid: ``config.include("bridge.frameworks.pyramid")``, then wrap ``config.make_wsgi_app()``.

    with Configurator() as config:
        config.include("bridge.frameworks.pyramid")
        ...
        application = bridge.BridgeMiddleware(config.make_wsgi_app())

- a ``ContextFound`` subscriber (after route matching, before the view) names the span after
  ``request.matched_route.pattern``: ``/users/{user_id:\\d+}`` → ``GET /users/{user_id}``;
- a tween just outside Pyramid's exception-view tween records ``request.exception`` when an exception
  view rendered it as a 5xx (a friendly 500 page). An exception no exception view takes escapes Pyramid
  and the bridge's middleware records it; 4xx exception views (``HTTPNotFound``...) are not failures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from bridge.frameworks import brace_params, rooted
from bridge.scope import fail_request, set_route

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.events import ContextFound
    from pyramid.request import Request
    from pyramid.response import Response

__all__ = ["includeme", "route_template", "tween_factory"]

logger = logging.getLogger(__name__)
Handler = Callable[["Request"], "Response"]


def includeme(config: Configurator) -> None:
    from pyramid.events import ContextFound
    from pyramid.tweens import EXCVIEW

    config.add_subscriber(_name_route, ContextFound)
    config.add_tween(f"{__name__}.tween_factory", over=EXCVIEW)


def route_template(pattern: str) -> str:
    """``/users/{user_id:\\d+}`` → ``/users/{user_id}``; a ``*subpath`` remainder → ``{subpath}``."""
    template = brace_params(pattern)
    head, star, rest = template.partition("*")
    if star and rest and "/" not in rest:
        template = head + "{" + rest + "}"
    return rooted(template)


def _name_route(event: ContextFound) -> None:
    try:
        route = getattr(event.request, "matched_route", None)
        if route is not None:
            set_route(route_template(route.pattern))
    except Exception:
        logger.warning("otel-sentry-bridge: could not name the Pyramid route", exc_info=True)


def tween_factory(handler: Handler, registry: Any) -> Handler:
    def tween(request: Request) -> Response:
        response = handler(request)
        try:
            exc = getattr(request, "exception", None)
            if isinstance(exc, BaseException) and response.status_code >= 500:
                fail_request(exc)
        except Exception:
            logger.warning("otel-sentry-bridge: could not inspect a Pyramid response", exc_info=True)
        return response

    return tween
