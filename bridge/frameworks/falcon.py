"""Falcon: ``application = bridge.frameworks.falcon.instrument(app)``.

- adds a Falcon middleware whose ``process_resource`` (after routing) names the span after
  ``req.uri_template``: ``/users/{user_id:int}`` → ``GET /users/{user_id}``;
- registers the error handler for ``Exception`` (the one Falcon installs renders a bare 500): it records
  the exception, logs it as Falcon's does, and renders the same 500 by raising ``HTTPInternalServerError``.
  More specific handlers you add still win (Falcon picks the closest class); if you register your own
  ``Exception`` handler after ``instrument()``, call ``bridge.scope.fail_request(ex)`` in it.
"""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any

from bridge.frameworks import brace_params, rooted
from bridge.scope import fail_request, set_route
from bridge.wsgi import BridgeMiddleware

if TYPE_CHECKING:
    from falcon import App, Request, Response

__all__ = ["RouteMiddleware", "instrument", "route_template"]

logger = logging.getLogger(__name__)


def instrument(app: App[Any, Any], **hooks: Any) -> BridgeMiddleware:
    """Add the middleware and error handler to ``app``; return the WSGI app to serve."""
    app.add_middleware(RouteMiddleware())
    app.add_error_handler(Exception, _record_and_render_500)
    return BridgeMiddleware(app, **hooks)


def route_template(uri_template: str) -> str:
    return rooted(brace_params(uri_template))


class RouteMiddleware:
    def process_resource(self, req: Request, resp: Response, resource: object, params: dict[str, Any]) -> None:
        try:
            if req.uri_template:
                set_route(route_template(req.uri_template))
        except Exception:
            logger.warning("otel-sentry-bridge: could not name the Falcon route", exc_info=True)


def _record_and_render_500(req: Request, resp: Response, ex: Exception, params: dict[str, Any]) -> None:
    from falcon import HTTPInternalServerError

    fail_request(ex)
    req.log_error(traceback.format_exc())
    raise HTTPInternalServerError()
