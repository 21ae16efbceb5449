"""``bridge.scope.set_route`` and ``fail_request``: what framework helpers use during a request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import pytest
from werkzeug.test import Client

import bridge
from bridge import scope
from tests.peers.otlp import OtlpReceiver, SpanView

Environ = dict[str, Any]


def exported(receiver: OtlpReceiver) -> list[SpanView]:
    assert bridge.flush(5)
    return receiver.spans()


@pytest.fixture
def otlp(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, service_name="scope-route-tests")
    return otlp_receiver


def test_set_route_renames_the_request_span(otlp: OtlpReceiver) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        scope.set_route("/users/{user_id}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = bridge.BridgeMiddleware(app, view_name=lambda environ: "myapp.views.user")
    Client(middleware).post("/users/7", buffered=True)
    [span] = exported(otlp)
    assert span.name == "POST /users/{user_id}"
    assert span.attributes["http.route"] == "/users/{user_id}"
    assert span.attributes["sentry.transaction_source"] == "route"  # replaces the hook's "component"


def test_set_route_keeps_the_route_for_unsampled_errors(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, sampler="always_off")
    seen: dict[str, Any] = {}

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        scope.set_route("/users/{user_id}")
        current = scope.current_scope()
        assert current is not None
        seen.update(current.attributes)
        start_response("200 OK", [])
        return [b""]

    Client(bridge.BridgeMiddleware(app)).get("/users/7", buffered=True)
    assert seen["http.route"] == "/users/{user_id}"
    assert exported(otlp_receiver) == []


def test_failure_recorded_by_a_framework_and_escaping_is_recorded_once(otlp: OtlpReceiver) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            raise LookupError("no such report")
        except LookupError as exc:
            scope.fail_request(exc)  # what a framework's error signal does...
            scope.fail_request(exc)  # ...even twice...
            raise  # ...before letting the very same exception escape

    with pytest.raises(LookupError):
        Client(bridge.BridgeMiddleware(app)).get("/r", buffered=True)
    [span] = exported(otlp)
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == "LookupError"
    assert span.attributes["http.response.status_code"] == 500
    [(name, event)] = span.events
    assert (name, event["exception.type"], event["exception.escaped"]) == ("exception", "LookupError", "True")


def test_failure_rendered_by_the_framework_keeps_its_response(otlp: OtlpReceiver) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            raise KeyError("settings")
        except KeyError as exc:
            scope.fail_request(exc)
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"sorry"]

    response = Client(bridge.BridgeMiddleware(app)).get("/", buffered=True)
    assert response.status_code == 503
    [span] = exported(otlp)
    assert span.status == "ERROR"
    assert span.attributes["http.response.status_code"] == 503
    assert [e["exception.type"] for _, e in span.events] == ["KeyError"]


def test_outside_a_request_they_do_nothing_and_never_raise() -> None:
    scope.set_route("/x")
    scope.fail_request(RuntimeError("nobody listens"))
    assert scope.current_scope() is None


def test_a_rendered_failure_keeps_its_type_and_message_over_the_500(otlp: OtlpReceiver) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            raise KeyError("settings")
        except KeyError as exc:
            scope.fail_request(exc)
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"oops"]

    Client(bridge.BridgeMiddleware(app)).get("/", buffered=True)
    [span] = exported(otlp)
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "KeyError"  # not the response's "500"
    assert span.status == "ERROR"
