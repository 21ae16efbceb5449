"""Channels consumers behind BridgeASGIMiddleware, under a real uvicorn: what escapes a consumer's
``connect`` and ``disconnect`` handlers is reported like what escapes ``receive`` (tests/test_examples_asgi.py),
each on its connection's one span, mechanism ``asgi``."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import bridge
from tests.asgi_driver import served_asgi
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver


def test_exceptions_in_connect_and_disconnect_handlers(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    importlib.import_module("examples.django_project.asgi")  # Django set up, as the example's asgi.py does
    from channels.generic.websocket import WebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    from bridge.frameworks.django import instrument_asgi_application

    class RefusesEveryone(WebsocketConsumer):  # type: ignore[misc]
        def connect(self) -> None:
            raise PermissionError("no entry without a ticket")

    class FailsToCleanUp(WebsocketConsumer):  # type: ignore[misc]
        def connect(self) -> None:
            self.accept()

        def disconnect(self, code: Any) -> None:
            raise ConnectionAbortedError(f"cleanup after {code} failed")

    application = instrument_asgi_application(
        ProtocolTypeRouter(
            {
                "websocket": URLRouter(
                    [path("refuse/", RefusesEveryone.as_asgi()), path("cleanup/", FailsToCleanUp.as_asgi())]
                )
            }
        )
    )
    bridge.init(service_name="channels-tests", otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    with served_asgi(application) as port:
        with pytest.raises(InvalidStatus):  # the handshake is refused: the server saw the exception
            connect(f"ws://127.0.0.1:{port}/refuse/", open_timeout=10)
        with connect(f"ws://127.0.0.1:{port}/cleanup/", open_timeout=10) as websocket:
            websocket.send("bye")
    assert bridge.flush(5)

    spans = {span.name: span for span in otlp_receiver.spans()}
    assert sorted(spans) == ["/cleanup/", "/refuse/"]
    for name, error_type in (("/refuse/", "PermissionError"), ("/cleanup/", "ConnectionAbortedError")):
        span = spans[name]
        assert (span.kind, span.status, span.attributes["error.type"]) == ("SERVER", "ERROR", error_type)
        [(event_name, event)] = span.events
        assert (event_name, event["exception.type"]) == ("exception", error_type)

    assert sentry_receiver.problems == []
    errors = {event["exception"]["values"][-1]["type"]: event for event in sentry_receiver.events()}
    assert sorted(errors) == ["ConnectionAbortedError", "PermissionError"]
    for error in errors.values():
        assert error["exception"]["values"][-1]["mechanism"]["type"] == "asgi"
    assert errors["PermissionError"]["contexts"]["trace"]["span_id"] == spans["/refuse/"].span_id
    frames = errors["ConnectionAbortedError"]["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "disconnect"
