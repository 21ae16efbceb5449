"""Pyramid with the bridge: ``config.include("bridge.frameworks.pyramid")``, then wrap the WSGI app.

    python -m examples.pyramid_app     # wsgiref on 127.0.0.1:8000

Spans are named after route patterns (``/users/{user_id:\\d+}`` → ``GET /users/{user_id}``). The app has
a friendly 500 page (an exception view); the exception it renders reaches both backends with its frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

import bridge

TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


def user(request: Request) -> Response:
    return Response(f"user {request.matchdict['user_id']}\n", content_type="text/plain")


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: str) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


def report(request: Request) -> Response:
    return Response(build_report(request.matchdict["report_id"]))  # raises: the 500 page below answers


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


def checkout(request: Request) -> Response:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        return Response("payment declined, please try another card\n", status=402, content_type="text/plain")
    return Response("paid\n", content_type="text/plain")


def stream(request: Request) -> Response:
    def ticks() -> Iterator[bytes]:
        for tick in range(3):
            yield f"tick {tick} {time.time_ns()}\n".encode()

    return Response(app_iter=ticks(), content_type="text/plain")


def server_error(exc: Exception, request: Request) -> Response:
    return Response("something went wrong on our side\n", status=500, content_type="text/plain")


def make_app() -> bridge.BridgeMiddleware:
    with Configurator() as config:
        config.include("bridge.frameworks.pyramid")
        for name, pattern, view in (
            ("user", r"/users/{user_id:\d+}", user),
            ("report", r"/reports/{report_id:\d+}", report),
            ("checkout", "/checkout", checkout),
            ("stream", "/stream", stream),
        ):
            config.add_route(name, pattern)
            config.add_view(view, route_name=name)
        config.add_exception_view(server_error, context=Exception)
        return bridge.BridgeMiddleware(config.make_wsgi_app())


application = make_app()

if __name__ == "__main__":
    from examples.serve import serve

    serve(application, "pyramid-example")
