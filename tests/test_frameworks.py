"""The framework helpers' edge cases, on small real apps driven through werkzeug's test client: an exception
recorded by the framework hook AND escaping is recorded once; the framework's own 4xx are not failures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client

import bridge
from tests.peers.otlp import OtlpReceiver, SpanView


@pytest.fixture
def otlp(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, service_name="framework-tests")
    return otlp_receiver


def exported(receiver: OtlpReceiver) -> dict[str, SpanView]:
    assert bridge.flush(5)
    return {span.attributes["url.path"]: span for span in receiver.spans()}


def exception_types(span: SpanView) -> list[str]:
    return [event["exception.type"] for name, event in span.events if name == "exception"]


def test_flask_propagating_exceptions_are_recorded_once(otlp: OtlpReceiver) -> None:
    from flask import Blueprint, Flask

    from bridge.frameworks.flask import instrument

    app = Flask(__name__)
    app.testing = True  # PROPAGATE_EXCEPTIONS: got_request_exception is sent, then the exception escapes
    items = Blueprint("items", __name__, url_prefix="/api/<tenant>")

    @items.get("/items/<int:item_id>")
    def item(tenant: str, item_id: int) -> str:
        raise LookupError(f"no item {item_id}")

    app.register_blueprint(items)
    assert instrument(instrument(app)) is app  # twice is once
    with pytest.raises(LookupError):
        Client(app).get("/api/acme/items/3", buffered=True)
    assert Client(app).get("/missing", buffered=True).status_code == 404
    spans = exported(otlp)
    failed = spans["/api/acme/items/3"]
    assert failed.name == "GET /api/{tenant}/items/{item_id}"
    assert exception_types(failed) == ["LookupError"]
    assert failed.status == "ERROR"
    assert (spans["/missing"].name, spans["/missing"].events) == ("GET /missing", [])
    assert len(spans) == 2  # one middleware, not two


def test_bottle_generators_failing_early_or_late(otlp: OtlpReceiver) -> None:
    from bottle import Bottle, abort

    from bridge.frameworks.bottle import instrument

    app = Bottle()

    @app.get("/early")
    def early() -> Iterator[str]:
        raise OSError("before the first chunk")
        yield ""  # pragma: no cover - makes this a generator

    @app.get("/late")
    def late() -> Iterator[str]:
        yield "first\n"
        raise OSError("after the first chunk")

    @app.get("/gone")
    def gone() -> str:
        abort(410, "gone")
        return ""  # pragma: no cover

    client = Client(instrument(app))
    assert client.get("/early", buffered=True).status_code == 500  # Bottle's _cast renders it
    with pytest.raises(OSError, match="after the first chunk"):  # past the first chunk: the server's
        client.get("/late", buffered=True)
    assert client.get("/gone", buffered=True).status_code == 410
    spans = exported(otlp)
    assert exception_types(spans["/early"]) == ["OSError"]
    assert spans["/early"].status == "ERROR"
    assert exception_types(spans["/late"]) == ["OSError"]  # the plugin and the middleware saw it: once
    assert (spans["/gone"].name, spans["/gone"].status, spans["/gone"].events) == ("GET /gone", "UNSET", [])


def test_pyramid_without_an_exception_view_and_its_own_4xx(otlp: OtlpReceiver) -> None:
    from pyramid.config import Configurator
    from pyramid.httpexceptions import HTTPForbidden
    from pyramid.request import Request

    def boom(request: Request) -> Any:
        raise ZeroDivisionError("no exception view takes this one")

    def forbidden(request: Request) -> Any:
        raise HTTPForbidden()

    with Configurator() as config:
        config.include("bridge.frameworks.pyramid")
        config.add_route("boom", "/boom/{n}")
        config.add_view(boom, route_name="boom")
        config.add_route("forbidden", "/forbidden")
        config.add_view(forbidden, route_name="forbidden")
        client = Client(bridge.BridgeMiddleware(config.make_wsgi_app()))
    with pytest.raises(ZeroDivisionError):
        client.get("/boom/1", buffered=True)
    assert client.get("/forbidden", buffered=True).status_code == 403
    assert client.get("/missing", buffered=True).status_code == 404
    spans = exported(otlp)
    assert spans["/boom/1"].name == "GET /boom/{n}"
    assert exception_types(spans["/boom/1"]) == ["ZeroDivisionError"]
    assert (spans["/forbidden"].name, spans["/forbidden"].events) == ("GET /forbidden", [])
    assert (spans["/missing"].status, spans["/missing"].events) == ("UNSET", [])


def test_falcon_http_errors_and_specific_handlers_are_not_failures(otlp: OtlpReceiver) -> None:
    import falcon

    from bridge.frameworks.falcon import instrument

    class Invalid(ValueError):
        pass

    class Things:
        def on_get(self, req: falcon.Request, resp: falcon.Response, thing_id: int) -> None:
            if thing_id == 1:
                raise falcon.HTTPNotFound()
            if thing_id == 2:
                raise Invalid("bad thing")
            raise ArithmeticError("out of things")

    def invalid(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict[str, Any]) -> None:
        raise falcon.HTTPBadRequest(description=str(ex))

    app = falcon.App()
    app.add_route("/things/{thing_id:int}", Things())
    client = Client(instrument(app))
    app.add_error_handler(Invalid, invalid)  # more specific than the bridge's Exception handler: it wins
    assert [client.get(f"/things/{n}", buffered=True).status_code for n in (1, 2, 3)] == [404, 400, 500]
    spans = exported(otlp)
    assert {span.name for span in spans.values()} == {"GET /things/{thing_id}"}
    assert (spans["/things/1"].events, spans["/things/2"].events) == ([], [])
    assert exception_types(spans["/things/3"]) == ["ArithmeticError"]
    assert spans["/things/3"].attributes["error.type"] == "ArithmeticError"
