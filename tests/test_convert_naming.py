"""The op, status, description and transaction-name rules, one table row per rule, on real spans."""
from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

from bridge.sentry.convert import (
    ConvertOptions,
    span_description,
    span_op,
    span_status,
    transaction_event,
    transaction_name,
)
from tests.convert_support import Recorder, sent, wsgi_client

SERVER, CLIENT, INTERNAL, PRODUCER = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL, SpanKind.PRODUCER


def finished(
    attributes: dict[str, Any], kind: SpanKind = INTERNAL, name: str = "span", status: Status | None = None
) -> ReadableSpan:
    recorder = Recorder()
    span = recorder.tracer.start_span(name, kind=kind, attributes=attributes)
    if status is not None:
        span.set_status(status)
    span.end()
    (done,) = recorder.spans
    return done


@pytest.mark.parametrize(
    ("attributes", "kind", "op"),
    [
        ({"sentry.op": "queue.process", "http.request.method": "GET"}, SERVER, "queue.process"),
        ({"http.request.method": "GET"}, SERVER, "http.server"),
        ({"http.method": "GET"}, SERVER, "http.server"),
        ({"http.request.method": "POST"}, CLIENT, "http.client"),
        ({"http.method": "POST"}, CLIENT, "http.client"),
        ({"http.method": "GET"}, INTERNAL, "http"),
        ({"http.method": "GET", "db.system": "postgresql"}, CLIENT, "http.client"),
        ({"db.system.name": "postgresql"}, CLIENT, "db"),
        ({"db.system": "redis"}, CLIENT, "db"),
        ({"rpc.system": "grpc"}, CLIENT, "rpc"),
        ({"messaging.system": "kafka"}, PRODUCER, "message"),
        ({"faas.trigger": "timer"}, SERVER, "timer"),
        ({}, INTERNAL, "default"),
        ({"sentry.op": ""}, INTERNAL, "default"),
    ],
)
def test_op(attributes: dict[str, Any], kind: SpanKind, op: str) -> None:
    span = finished(attributes, kind)
    assert span_op(span) == op
    event = transaction_event(span, [], ConvertOptions())
    assert event["contexts"]["trace"]["op"] == op
    sent(event)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (200, "ok"), (302, "ok"), (399, "ok"), (400, "invalid_argument"), (401, "unauthenticated"),
        (403, "permission_denied"), (404, "not_found"), (409, "already_exists"), (413, "failed_precondition"),
        (418, "invalid_argument"), (429, "resource_exhausted"), (500, "internal_error"), (501, "unimplemented"),
        (502, "internal_error"), (503, "unavailable"), (504, "deadline_exceeded"), (599, "internal_error"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("key", ["http.response.status_code", "http.status_code"])
def test_status_from_http(code: int, status: str, key: str) -> None:
    # The HTTP status wins over OpenTelemetry's status, whatever that says.
    span = finished({"http.request.method": "GET", key: code}, SERVER, status=Status(StatusCode.ERROR))
    assert span_status(span) == status
    event = transaction_event(span, [], ConvertOptions())
    assert event["contexts"]["trace"]["status"] == status
    assert event["contexts"]["response"] == {"status_code": code}
    sent(event)


@pytest.mark.parametrize(
    ("attributes", "otel", "status"),
    [
        ({}, Status(StatusCode.UNSET), "ok"),
        ({}, Status(StatusCode.OK), "ok"),
        ({}, Status(StatusCode.ERROR, "boom"), "internal_error"),
        ({"http.status_code": "404"}, Status(StatusCode.UNSET), "not_found"),  # text, from received spans
        ({"http.status_code": 0}, Status(StatusCode.ERROR), "internal_error"),  # not an HTTP status: OTel's
        ({"http.status_code": 700}, Status(StatusCode.UNSET), "ok"),
        ({"http.status_code": True}, Status(StatusCode.UNSET), "ok"),
    ],
)
def test_status_without_http(attributes: dict[str, Any], otel: Status, status: str) -> None:
    span = finished(attributes, INTERNAL, status=otel)
    assert span_status(span) == status
    event = transaction_event(span, [], ConvertOptions())
    assert "response" not in event["contexts"] or attributes.get("http.status_code") == "404"
    sent(event)


@pytest.mark.parametrize(
    ("attributes", "kind", "name", "description"),
    [
        ({"db.system": "postgresql", "db.statement": "SELECT 1"}, CLIENT, "db", "SELECT 1"),
        ({"db.system.name": "postgresql", "db.query.text": "SELECT 2"}, CLIENT, "db", "SELECT 2"),
        ({"db.system": "sqlite"}, CLIENT, "SELECT shop", "SELECT shop"),
        ({"http.method": "GET", "http.route": "/u/{id}", "http.target": "/u/1?x=2"}, SERVER, "GET", "GET /u/{id}"),
        ({"http.method": "GET", "http.target": "/u/1?x=2"}, SERVER, "GET /u/1", "GET /u/1"),
        ({"http.request.method": "PUT", "url.path": "/u/1", "url.query": "x=2"}, SERVER, "PUT", "PUT /u/1"),
        (
            {"http.request.method": "GET", "url.full": "https://me:pw@api.example.com/v1/items?token=abc#f"},
            CLIENT,
            "GET",
            "GET https://api.example.com/v1/items",
        ),
        ({"http.method": "GET", "http.url": "http://h:8080/a?b=c"}, CLIENT, "GET", "GET http://h:8080/a"),
        ({"http.method": "GET"}, CLIENT, "GET", "GET"),
        ({"rpc.system": "grpc"}, CLIENT, "Greeter/SayHello", "Greeter/SayHello"),
    ],
)
def test_description(attributes: dict[str, Any], kind: SpanKind, name: str, description: str) -> None:
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("root", kind=SERVER):
        recorder.tracer.start_span(name, kind=kind, attributes=attributes).end()
    root = recorder.root()
    (child,) = recorder.children(root)
    assert span_description(child) == description
    event = transaction_event(root, [child], ConvertOptions())
    assert event["spans"][0]["description"] == description
    assert "?" not in description and "token" not in description and "pw" not in description
    sent(event)


@pytest.mark.parametrize(
    ("attributes", "span_name", "name", "source"),
    [
        (
            {"http.request.method": "GET", "http.route": "/users/{id}", "url.path": "/users/7"},
            "GET", "GET /users/{id}", "route",
        ),
        ({"http.method": "GET", "http.route": "GET /users/{id}"}, "GET", "GET /users/{id}", "route"),
        ({"http.method": "GET", "http.target": "/a/b?x=1"}, "GET /a/b", "GET /a/b", "url"),
        ({"http.request.method": "POST", "url.path": "/p", "url.query": "q=1"}, "POST /p", "POST /p", "url"),
        ({"http.method": "GET", "http.url": "http://h:8080/x/y?z=1"}, "GET", "GET /x/y", "url"),
        ({"http.method": "GET", "http.url": "http://h:8080"}, "GET", "GET /", "url"),
        (
            {"http.request.method": "_OTHER", "http.request.method_original": "PURGE", "url.path": "/c"},
            "HTTP", "PURGE /c", "url",
        ),
        (
            {"sentry.transaction_source": "component", "http.method": "GET", "http.route": "/r"},
            "shop.views.index", "shop.views.index", "component",
        ),
        ({"sentry.transaction_source": "custom", "http.method": "GET", "url.path": "/r"}, "pay", "pay", "custom"),
        ({"sentry.transaction_source": "bogus", "http.method": "GET", "url.path": "/r"}, "x", "GET /r", "url"),
        ({"sentry.transaction_source": "component"}, "generic WSGI request", "<unlabeled transaction>", "custom"),
        ({}, "nightly job", "nightly job", "custom"),
        ({"http.method": "GET"}, "generic WSGI request", "GET", "custom"),
        ({}, "", "<unlabeled transaction>", "custom"),
        ({"http.method": " "}, "", "<unlabeled transaction>", "custom"),  # a blank method is no method
        (
            {"http.request.method": "_OTHER", "http.request.method_original": "\t", "url.path": "/c"},
            "", "_OTHER /c", "url",
        ),
    ],
)  # fmt: skip
def test_transaction_name(attributes: dict[str, Any], span_name: str, name: str, source: str) -> None:
    span = finished(attributes, SERVER, name=span_name)
    assert transaction_name(span) == (name, source)
    event = transaction_event(span, [], ConvertOptions())
    assert (event["transaction"], event["transaction_info"]) == (name, {"source": source})
    sent(event)


def _items(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom")
    status = {"/missing": "404 Not Found", "/teapot": "418 I'm a teapot", "/down": "503 Service Unavailable"}
    start_response(status.get(path, "200 OK"), [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize("mode", [None, "http", "http/dup"])
@pytest.mark.parametrize(
    ("path", "name", "status", "code"),
    [
        ("/items/42?password=x", "GET /items/42", "ok", 200),
        ("/missing", "GET /missing", "not_found", 404),
        ("/teapot", "GET /teapot", "invalid_argument", 418),
        ("/down", "GET /down", "unavailable", 503),
        ("/boom", "GET /boom", "internal_error", None),
    ],
)
def test_wsgi_spans_in_every_semconv_mode(
    mode: str | None, path: str, name: str, status: str, code: int | None
) -> None:
    recorder = Recorder()
    client = wsgi_client(_items, recorder, mode)
    try:
        client.get(path)
    except RuntimeError:
        assert code is None
    root = recorder.root()
    event = transaction_event(root, [], ConvertOptions())
    assert event["transaction"] == name  # the span is already called "GET /path": never "GET GET /path"
    assert event["transaction_info"] == {"source": "url"}
    assert event["contexts"]["trace"]["op"] == "http.server"
    assert event["contexts"]["trace"]["status"] == status
    assert event["contexts"].get("response") == ({"status_code": code} if code else None)
    request = event["request"]
    assert request["method"] == "GET"
    assert request["url"] == "http://localhost" + path.split("?")[0]
    assert request["env"] == {"SERVER_NAME": "localhost", "SERVER_PORT": "80"}
    assert request.get("query_string") == ("password=[Filtered]" if "?" in path else None)
    sent(event)


@pytest.mark.parametrize("mode", [None, "http", "http/dup"])
def test_wsgi_route_from_a_framework_hook(mode: str | None) -> None:
    recorder = Recorder()
    client = wsgi_client(_items, recorder, mode)
    # A framework integration names the route on the server span while the request runs.
    client.application.request_hook = lambda span, environ: span.set_attribute("http.route", "/items/{id}")
    client.get("/items/42")
    event = transaction_event(recorder.root(), [], ConvertOptions())
    assert (event["transaction"], event["transaction_info"]["source"]) == ("GET /items/{id}", "route")
    sent(event)
