"""BridgeASGIMiddleware against the real SDK, the real OTLP exporter and real uvicorn over loopback.

Apps are Starlette apps or raw ASGI callables served by uvicorn in a thread (``tests.asgi_driver``);
the bridge's output is read from the OTLP and Sentry receivers after ``bridge.flush()``. Only faults a
real server cannot produce on demand (a broken scope) call the middleware directly, as a server would.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

import bridge
from bridge import httpreq
from tests.asgi_driver import served_asgi
from tests.examples_driver import get, send
from tests.peers.otlp import OtlpReceiver, SpanView
from tests.peers.sentry import SentryReceiver

Scope = dict[str, Any]


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("plain")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/plain", plain), Mount("/api", routes=[Route("/items/{item_id:int}", item)])])


def exported(receiver: OtlpReceiver) -> list[SpanView]:
    assert bridge.flush(5)
    return receiver.spans()


@pytest.fixture
def otlp(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    bridge.init(service_name="asgi-tests", otlp_endpoint=otlp_receiver.endpoint)
    return otlp_receiver


def test_starlette_routes_behind_a_mount(otlp: OtlpReceiver) -> None:
    with served_asgi(bridge.BridgeASGIMiddleware(starlette_app())) as port:
        replies = send(port, [("/api/items/7?x=1", {}), ("/plain", {}), ("/missing", {})])
    assert [reply.status for reply in replies.values()] == [200, 200, 404]
    spans = {span.attributes["url.path"]: span for span in exported(otlp)}
    assert {path: span.kind for path, span in spans.items()} == dict.fromkeys(
        ("/api/items/7", "/plain", "/missing"), "SERVER"
    )
    items = spans["/api/items/7"]
    assert items.name == "GET /api/items/{item_id}"
    assert items.attributes["http.route"] == "/api/items/{item_id}"
    assert items.attributes["url.query"] == "x=1"
    assert items.attributes["http.response.status_code"] == 200
    assert items.scope == "bridge.asgi"
    assert spans["/plain"].name == "GET /plain"
    assert "http.route" not in spans["/missing"].attributes
    assert spans["/missing"].attributes["http.response.status_code"] == 404


def test_exception_before_the_response_is_a_500_and_reaches_the_server(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(service_name="asgi-tests", otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    seen_by_server: list[BaseException] = []
    raised: list[BaseException] = []

    async def broken(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        exc = KeyError("no such invoice")
        raised.append(exc)
        raise exc

    middleware = bridge.BridgeASGIMiddleware(broken)

    async def server_side(scope: Scope, receive: Any, send: Any) -> None:  # what the server calls
        try:
            await middleware(scope, receive, send)
        except BaseException as exc:
            seen_by_server.append(exc)
            raise

    with served_asgi(server_side) as port:
        reply = get(port, "/invoices/3")
    assert reply.status == 500  # uvicorn's own answer
    assert seen_by_server == raised  # the very same exception object
    [span] = exported(otlp_receiver)
    assert (span.status, span.attributes["http.response.status_code"]) == ("ERROR", 500)
    assert span.attributes["error.type"] == "KeyError"
    [(name, event)] = span.events
    assert (name, event["exception.type"], event["exception.escaped"]) == ("exception", "KeyError", "True")
    [error] = sentry_receiver.events()
    assert error["exception"]["values"][-1]["mechanism"] == {"type": "asgi", "handled": False, "exception_id": 0}
    assert error["contexts"]["trace"]["span_id"] == span.span_id


def test_client_disconnect_ends_the_span_with_what_was_sent(otlp: OtlpReceiver) -> None:
    stopped = threading.Event()

    async def endless(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"chunk\n"
                    await asyncio.sleep(0.01)
            finally:
                stopped.set()

        return StreamingResponse(chunks(), media_type="text/plain")

    app = Starlette(routes=[Route("/endless", endless)])
    with served_asgi(bridge.BridgeASGIMiddleware(app)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b"chunk" in client.recv(4096)
        assert stopped.wait(10), "the app did not see the disconnect"
    [span] = exported(otlp)
    assert (span.name, span.attributes["http.response.status_code"]) == ("GET /endless", 200)
    assert (span.status, span.events) == ("UNSET", [])  # the client left: no error of the app


def test_lifespan_is_untraced_and_the_scope_is_never_modified(otlp: OtlpReceiver) -> None:
    lifespan: list[str] = []
    changed: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                lifespan.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = bridge.BridgeASGIMiddleware(app)

    async def server_side(scope: Scope, receive: Any, send: Any) -> None:
        before = copy.deepcopy({key: value for key, value in scope.items() if key != "state"})
        await middleware(scope, receive, send)
        after = {key: value for key, value in scope.items() if key != "state"}
        if after != before:
            changed.append(scope["type"])

    with served_asgi(server_side, lifespan="on") as port:
        assert get(port, "/x", {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}).status == 200
    assert lifespan == ["lifespan.startup", "lifespan.shutdown"]
    assert changed == []
    [span] = exported(otlp)
    assert (span.name, span.trace_id, span.parent_span_id) == ("GET /x", "ab" * 16, "cd" * 8)


def test_a_broken_scope_is_served_untraced_with_one_warning(
    otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpreq, "_untraced_warned", [float("-inf")])  # no minute left over from other tests
    served: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        pass

    middleware = bridge.BridgeASGIMiddleware(app)
    broken = [{"type": "http", "headers": 42, "path": "/x"}, {"type": "http", "server": "nowhere", "headers": [(1,)]}]
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        for scope in broken:
            asyncio.run(middleware(scope, receive, send))
        asyncio.run(middleware(None, receive, send))  # type: ignore[arg-type]
    assert served == [*broken, None]  # served, untraced
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "served untraced" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: the others went to DEBUG
    assert exported(otlp) == []


def test_hooks_and_constructor_arguments(otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, Any] = {}

    def response_hook(span: Any, scope: Scope, message: dict[str, Any]) -> None:
        seen["status"] = message["status"]
        span.set_attribute("app.response_hook", True)

    def boom(*args: Any) -> Any:
        raise RuntimeError("hook bug")

    app = bridge.BridgeASGIMiddleware(
        starlette_app(),
        skip=lambda scope: scope["path"] == "/health",
        identify_user=lambda scope: "user-42",
        view_name=lambda scope: "shop.views.plain" if scope["path"] == "/plain" else None,
        server_request_hook=lambda span, scope: span.set_attribute("app.request_hook", scope["path"]),
        response_hook=response_hook,
        excluded_urls="/private",
    )
    broken = bridge.BridgeASGIMiddleware(
        starlette_app(), skip=boom, identify_user=boom, view_name=boom, request_hook=boom, response_hook=boom
    )
    with served_asgi(app) as port, served_asgi(broken) as broken_port:
        replies = send(port, [("/health", {}), ("/private/x", {}), ("/plain", {}), ("/api/items/3", {})])
        assert get(broken_port, "/api/items/4").status == 200
    assert [reply.status for reply in replies.values()] == [404, 404, 200, 200]
    spans = {span.attributes["url.path"]: span for span in exported(otlp)}
    assert sorted(spans) == ["/api/items/3", "/api/items/4", "/plain"]  # skipped, excluded: untraced
    named = spans["/plain"]
    assert named.name == "shop.views.plain"
    assert named.attributes["sentry.transaction_source"] == "component"
    assert named.attributes["enduser.id"] == "user-42"
    assert named.attributes["app.request_hook"] == "/plain"
    assert named.attributes["app.response_hook"] is True
    assert seen["status"] == 200
    assert spans["/api/items/3"].name == "GET /api/items/{item_id}"  # the hook said None: the route
    assert spans["/api/items/4"].name == "GET /api/items/{item_id}"  # raising hooks: as if absent
    assert sum("hook raised" in r.getMessage() for r in caplog.records) == 5


def test_message_spans_are_off_by_default_and_optional(otlp: OtlpReceiver) -> None:
    with served_asgi(bridge.BridgeASGIMiddleware(starlette_app())) as port:
        assert get(port, "/plain").status == 200
    assert [span.kind for span in exported(otlp)] == ["SERVER"]
    otlp.clear()
    with served_asgi(bridge.BridgeASGIMiddleware(starlette_app(), message_spans=True)) as port:
        assert get(port, "/plain").status == 200
    spans = exported(otlp)
    [server] = [span for span in spans if span.kind == "SERVER"]
    internal = [span for span in spans if span.kind == "INTERNAL"]
    assert sorted(span.attributes["asgi.event.type"] for span in internal) == [
        "http.response.body",
        "http.response.start",
    ]
    assert {span.parent_span_id for span in internal} == {server.span_id}
    assert {span.name for span in internal} == {"GET /plain http send"}


def test_tracer_provider_argument_takes_the_spans(otlp: OtlpReceiver) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with served_asgi(bridge.BridgeASGIMiddleware(starlette_app(), tracer_provider=provider)) as port:
        assert get(port, "/plain").status == 200
    [span] = memory.get_finished_spans()
    assert span.name == "GET /plain"
    assert exported(otlp) == []


def test_sentry_trace_and_baggage_continue_the_upstream_trace(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(service_name="asgi-tests", otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)

    async def fails(request: Request) -> PlainTextResponse:
        raise ValueError("upstream's trace")

    app = bridge.BridgeASGIMiddleware(Starlette(routes=[Route("/fails", fails)]))
    trace_id, parent = "771a43a4192642f0b136d5159a501700", "b3e1b2a3c4d5e6f7"
    headers = {
        "sentry-trace": f"{trace_id}-{parent}-1",
        "baggage": f"sentry-trace_id={trace_id},sentry-public_key=49d0f7386ad645858ae85020e393bef3,"
        "sentry-release=upstream@1,sentry-sample_rate=1.0",
    }
    with served_asgi(app) as port:
        assert get(port, "/fails", headers).status == 500
    [span] = exported(otlp_receiver)
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent)
    [error] = sentry_receiver.events()
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert sentry_receiver.problems == []
    [dsc] = [
        json.loads(received.request.data.partition(b"\n")[0])["trace"]
        for received in sentry_receiver.received
        if any(kind == "event" for kind, _ in received.items)
    ]
    assert (dsc["trace_id"], dsc["release"]) == (trace_id, "upstream@1")  # the upstream's DSC, kept


def test_lifespan_failure_reaches_the_server_once_and_apps_without_lifespan_get_it_answered(
    otlp: OtlpReceiver,
) -> None:
    calls: list[str] = []

    async def failing_startup(scope: Scope, receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        await receive()
        raise RuntimeError("database unreachable")

    async def no_lifespan(scope: Scope, receive: Any, send: Any) -> None:  # as Django's ASGI handler
        calls.append(scope["type"])
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    async def lifespan(app: Any) -> list[str]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})
        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await bridge.BridgeASGIMiddleware(app)({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
        return sent

    with pytest.raises(RuntimeError, match="database unreachable"):
        asyncio.run(lifespan(failing_startup))
    assert calls == ["lifespan"]  # the server decides what a failed startup means; the app ran once
    calls.clear()
    assert asyncio.run(lifespan(no_lifespan)) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert calls == ["lifespan"]
    assert exported(otlp) == []  # lifespan is never traced


def test_captured_headers_are_sanitized_as_for_wsgi(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(
        service_name="asgi-tests",
        otlp_endpoint=otlp_receiver.endpoint,
        capture_request_headers=["x-request-id", "authorization"],
        capture_response_headers=["content-type"],
    )
    with served_asgi(bridge.BridgeASGIMiddleware(starlette_app())) as port:
        assert get(port, "/plain", {"X-Request-Id": "r-1", "Authorization": "Bearer secret"}).status == 200
    [span] = exported(otlp_receiver)
    assert span.attributes["http.request.header.x_request_id"] == ["r-1"]
    assert span.attributes["http.request.header.authorization"] == ["[REDACTED]"]  # no send_default_pii
    assert span.attributes["http.response.header.content_type"] == ["text/plain; charset=utf-8"]
    assert "client.address" not in span.attributes


def test_unsampled_request_still_reports_its_error_with_its_request(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(
        service_name="asgi-tests", otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, traces_sample_rate=0.0
    )

    async def fails(request: Request) -> PlainTextResponse:
        bridge.set_tag("order", "o-7")
        raise OverflowError("basket too large")

    app = bridge.BridgeASGIMiddleware(Starlette(routes=[Route("/orders/{order_id}", fails)]))
    with served_asgi(app) as port:
        assert get(port, "/orders/7", {"User-Agent": "probe/1.0", "Cookie": "session=secret"}).status == 500
    assert exported(otlp_receiver) == []  # not sampled: no span leaves
    assert sentry_receiver.transactions() == []
    [error] = sentry_receiver.events()
    value = error["exception"]["values"][-1]
    assert value["type"] == "OverflowError"
    assert (value["mechanism"]["type"], value["mechanism"]["handled"]) == ("asgi", False)
    assert error["transaction"] == "GET /orders/{order_id}"
    tags = error["tags"]
    assert (dict(tags) if isinstance(tags, list) else tags)["order"] == "o-7"
    headers = error["request"]["headers"]
    headers = dict(headers) if isinstance(headers, list) else headers
    assert headers["User-Agent"] == "probe/1.0"
    assert headers["Cookie"] != "session=secret"  # masked without send_default_pii
    assert sentry_receiver.problems == []
