"""Flask: ``bridge.frameworks.flask.instrument(app)``.

- wraps ``app.wsgi_app`` in :class:`~bridge.BridgeMiddleware` (Flask's documented place for WSGI
  middleware, so ``app`` itself stays the object you serve);
- on ``request_started`` (sent after routing, before the view) names the span after
  ``request.url_rule.rule``: ``/users/<int:user_id>`` → ``GET /users/{user_id}``;
- on ``got_request_exception`` (sent with the exception Flask is about to turn into a 500) records it.
With ``PROPAGATE_EXCEPTIONS`` (testing, debug) the same exception then escapes and is not recorded twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge.frameworks import angle_params
from bridge.scope import fail_request, set_route
from bridge.wsgi import BridgeMiddleware

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["instrument", "route_template"]

logger = logging.getLogger(__name__)
EXTENSION = "otel_sentry_bridge"


def instrument(app: Flask, **hooks: Any) -> Flask:
    """Instrument ``app`` in place (once; again is a no-op) and return it. ``hooks`` go to BridgeMiddleware."""
    from flask import got_request_exception, request_started

    if EXTENSION in app.extensions:
        return app
    middleware = BridgeMiddleware(app.wsgi_app, **hooks)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    request_started.connect(_name_route, app, weak=False)
    got_request_exception.connect(_record_failure, app, weak=False)
    app.extensions[EXTENSION] = middleware
    return app


def route_template(rule: str) -> str:
    return angle_params(rule)


def _name_route(sender: Flask, **extra: Any) -> None:
    try:
        from flask import request

        rule = request.url_rule
        if rule is not None:
            set_route(route_template(rule.rule))
    except Exception:
        logger.warning("otel-sentry-bridge: could not name the Flask route", exc_info=True)


def _record_failure(sender: Flask, exception: BaseException, **extra: Any) -> None:
    fail_request(exception)
