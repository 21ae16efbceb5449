"""Errors leave when they happen: a capture during a long streaming response is in Sentry while the response
still streams, names its transaction and carries its trace; the span's end does not send it again, and the
span still records it for OTLP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

from werkzeug.test import Client

import bridge
from bridge.scope import set_route
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver


def streaming_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    set_route("/feed/{id}")
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    try:
        {}["missing"]
    except KeyError:
        bridge.capture_exception()
    bridge.capture_message("stream opened", level="warning")
    for number in range(1000):
        yield f"data: {number}\n\n".encode()


def test_an_error_captured_at_the_start_of_a_stream_arrives_while_it_streams(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, service_name="stream")
    client = Client(bridge.BridgeMiddleware(streaming_app))
    response = client.get("/feed/7", buffered=False)
    body = iter(response.response)
    assert next(body) == b"data: 0\n\n"  # the stream is open, far from its end

    assert bridge.flush(5.0)
    events = sentry_receiver.events()
    assert sentry_receiver.transactions() == []  # the request has not ended
    assert len(events) == 2, events
    error = next(event for event in events if "exception" in event)
    message = next(event for event in events if "logentry" in event)
    assert error["exception"]["values"][-1]["type"] == "KeyError"
    assert error["exception"]["values"][-1]["mechanism"] == {"type": "generic", "handled": True, "exception_id": 0}
    assert message["logentry"]["formatted"] == "stream opened" and message["level"] == "warning"
    for event in events:
        assert event["transaction"] == "GET /feed/{id}"
        assert event["request"]["url"].endswith("/feed/7")
    assert error["contexts"]["trace"]["trace_id"] == message["contexts"]["trace"]["trace_id"]

    for _ in body:  # the rest of the stream, then the span ends
        pass
    response.close()
    assert bridge.flush(5.0)
    [transaction] = sentry_receiver.transactions()
    assert len(sentry_receiver.events()) == 2  # not sent again at the span's end
    assert transaction["contexts"]["trace"]["trace_id"] == error["contexts"]["trace"]["trace_id"]
    assert transaction["contexts"]["trace"]["span_id"] == error["contexts"]["trace"]["span_id"]
    [span] = otlp_receiver.wait_for_spans(1)
    recorded = [event for event in span.events if event[0] in ("exception", "sentry.message")]
    assert [name for name, _ in recorded] == ["exception", "sentry.message"]
    assert {attributes["sentry.event_id"] for _, attributes in recorded} == {error["event_id"], message["event_id"]}


def test_an_unhandled_error_leaves_before_the_server_closes_the_body(sentry_receiver: SentryReceiver) -> None:
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first"
        raise RuntimeError("the stream broke")

    bridge.init(dsn=sentry_receiver.dsn, exporters=["sentry"], service_name="stream")
    body = bridge.BridgeMiddleware(failing)(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/x",
            "wsgi.url_scheme": "http",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
        },
        lambda *a: None,
    )
    iterator = iter(body)
    assert next(iterator) == b"first"
    try:
        next(iterator)
    except RuntimeError:
        pass
    assert bridge.flush(5.0)
    [error] = sentry_receiver.events()  # before (or without) close(): the server may never get that far
    assert error["exception"]["values"][-1]["mechanism"]["handled"] is False
    assert error["transaction"] == "GET /x"
    getattr(body, "close", lambda: None)()
    assert bridge.flush(5.0)
    assert len(sentry_receiver.events()) == 1


def test_an_exception_logged_then_escaping_is_sent_once_and_recorded_on_the_span(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    import logging

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        try:
            raise LookupError("order 9")
        except LookupError:
            logging.getLogger("shop.views").exception("lookup failed")
            raise

    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, service_name="once")
    try:
        Client(bridge.BridgeMiddleware(app)).get("/orders/9")
    except LookupError:
        pass
    assert bridge.flush(5.0)
    [event] = sentry_receiver.events()  # the logging integration's; the middleware's is the same object
    assert event["exception"]["values"][-1]["mechanism"]["type"] == "logging"
    assert event["transaction"] == "GET /orders/9"
    [span] = otlp_receiver.wait_for_spans(1)
    [(name, attributes)] = [e for e in span.events if e[0] == "exception"]
    assert attributes["sentry.event_id"] == event["event_id"]
    assert len(sentry_receiver.transactions()) == 1
