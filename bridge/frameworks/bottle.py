"""Bottle: ``application = bridge.frameworks.bottle.instrument(app)``.

- installs a Bottle plugin (Bottle's own extension point) that names the span after ``route.rule``
  before the callback runs: ``/users/<user_id:int>`` → ``GET /users/{user_id}``;
- Bottle's catch-all turns an exception into its 500 page and hands the exception to ``start_response``
  as ``exc_info``; a thin layer between the bridge and Bottle records it from there;
- a generator callback is iterated by Bottle (its first chunk) or by the server (the rest); an exception
  it raises is recorded as it leaves the generator.
"""

from __future__ import annotations

import functools
import logging
import re
import types
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Callable

from bridge.frameworks import rooted
from bridge.scope import fail_request, set_route
from bridge.wsgi import BridgeMiddleware, StartResponse, WSGIApp

if TYPE_CHECKING:
    from bottle import Bottle, Route

__all__ = ["BridgePlugin", "instrument", "route_template"]

logger = logging.getLogger(__name__)
# <name>, <name:filter>, <name:filter:config> (config may escape ">" as "\>"); the name may be empty
_WILDCARD = re.compile(r"<([A-Za-z_]\w*)?(?::[A-Za-z_]*(?::(?:\\.|[^\\>])+)?)?>")


def instrument(app: Bottle, **hooks: Any) -> BridgeMiddleware:
    """Install the plugin on ``app`` and return the WSGI app to serve; ``hooks`` go to BridgeMiddleware."""
    if not any(isinstance(plugin, BridgePlugin) for plugin in app.plugins):
        app.install(BridgePlugin())
    return BridgeMiddleware(_CatchAll(app), **hooks)


def route_template(rule: str) -> str:
    return rooted(_WILDCARD.sub(lambda m: "{" + (m.group(1) or "") + "}", rule))


class BridgePlugin:
    """Names each request after its route; records exceptions raised while iterating a generator body."""

    name = "otel_sentry_bridge"
    api = 2

    def apply(self, callback: Callable[..., Any], route: Route) -> Callable[..., Any]:
        template = route_template(route.rule)

        @functools.wraps(callback)
        def named(*args: Any, **kwargs: Any) -> Any:
            set_route(template)
            result = callback(*args, **kwargs)
            if isinstance(result, types.GeneratorType):
                return _recorded(result)
            return result

        return named


def _recorded(body: Iterator[Any]) -> Iterator[Any]:
    from bottle import HTTPResponse

    try:
        yield from body
    except HTTPResponse:
        raise
    except Exception as exc:
        fail_request(exc)
        raise


class _CatchAll:
    """Between the bridge and Bottle: takes the exception Bottle passes to ``start_response``."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def recording(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if exc_info and exc_info[0] is not None and isinstance(exc_info[0][1], BaseException):
                fail_request(exc_info[0][1])
            return start_response(status, headers, *exc_info)

        return self.app(environ, recording)
