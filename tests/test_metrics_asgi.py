"""The HTTP server metrics where a request ends outside the WSGI wrapper: ASGI requests under
``BridgeASGIMiddleware`` (Starlette served by uvicorn over loopback) and Django requests whose span
``RouteMiddleware`` made (Django's test ``Client``, no WSGI wrapper). Both go through
``ServerRequest.end`` (bridge/httpreq.py); read back from the OTLP receiver after ``bridge.flush()``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import bridge
from tests.asgi_driver import served_asgi
from tests.examples_driver import send
from tests.peers.otlp import OtlpReceiver, PointView
from tests.peers.sentry import SentryReceiver
from tests.test_examples import EXAMPLES

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"


def points_by_route(receiver: OtlpReceiver) -> dict[str, PointView]:
    assert bridge.flush(5)
    return {point.attributes.get("http.route", ""): point for point in receiver.latest_points(DURATION)}


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def broken(request: Request) -> PlainTextResponse:
    raise LookupError("no such report")


def test_an_asgi_request_records_one_duration_point_with_its_route(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(service_name="asgi-metrics", otlp_endpoint=otlp_receiver.endpoint)
    app = Starlette(routes=[Mount("/api", routes=[Route("/items/{item_id:int}", item)]), Route("/broken", broken)])
    with served_asgi(bridge.BridgeASGIMiddleware(app)) as port:
        replies = send(port, [("/api/items/7", {}), ("/broken", {})])
    assert [reply.status for reply in replies.values()] == [200, 500]
    points = points_by_route(otlp_receiver)
    assert sorted(points) == ["/api/items/{item_id}", "/broken"]
    items, failed = points["/api/items/{item_id}"], points["/broken"]
    assert (items.count, failed.count) == (1, 1)
    assert items.unit == "s" and items.kind == "histogram"
    assert items.attributes == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "http.route": "/api/items/{item_id}",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    assert items.total is not None and items.total > 0
    # An exception that escaped before the response: the server answers 500; the metrics name its type
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["error.type"] == "LookupError"
    assert items.scope == "opentelemetry.instrumentation.asgi"  # OpenTelemetry's ASGI middleware's scope
    [active] = otlp_receiver.latest_points(ACTIVE)
    assert (active.value, active.attributes) == (0.0, {"http.request.method": "GET", "url.scheme": "http"})


def test_django_route_middleware_spans_are_measured_too(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    EXAMPLES["django"].application()  # Django set up with the example's settings
    from django.test import Client

    from examples.django_project.observability import init_bridge

    init_bridge(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    assert client.get("/users/7").status_code == 200
    assert client.get("/users/8").status_code == 200
    assert client.get("/reports/42").status_code == 500
    points = points_by_route(otlp_receiver)
    assert sorted(points) == ["/reports/{report_id}", "/users/{user_id}"]
    assert points["/users/{user_id}"].count == 2
    assert points["/users/{user_id}"].scope == "opentelemetry.instrumentation.wsgi"
    report = points["/reports/{report_id}"]
    assert (report.count, report.attributes["error.type"]) == (1, "RuntimeError")
    [active] = otlp_receiver.latest_points(ACTIVE)
    assert active.value == 0.0
