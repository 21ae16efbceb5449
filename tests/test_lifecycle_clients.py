"""The request lifecycle as users' test clients drive it: Flask's ``app.test_client()``, werkzeug's ``Client``
with and without closing the response, a body that raises while the client iterates it. None of these
clients has to call ``close()``: the span ends when the body is exhausted (or raises), and the app's
``close()`` is called then, once. Every scenario checks the OTLP receiver and the Sentry receiver."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Callable

import pytest
from werkzeug.test import Client

import bridge
from tests.lifecycle_support import Backends, CountingBody, SizedBody
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

Environ = dict[str, Any]


@pytest.fixture
def backends(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> Backends:
    return Backends(otlp_receiver, sentry_receiver)


def serving(body: Iterable[bytes]) -> Callable[[Environ, Callable[..., Any]], Iterable[bytes]]:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def flask_app() -> Any:
    from flask import Flask, Response

    from bridge.frameworks.flask import instrument

    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.get("/boom")
    def boom() -> str:
        raise KeyError("no such thing")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            yield "one\n"
            yield "two\n"

        return Response(chunks(), mimetype="text/plain")

    @app.get("/stream-fails")
    def stream_fails() -> Response:
        def chunks() -> Iterator[str]:
            yield "one\n"
            raise ConnectionAbortedError("upstream went away")

        return Response(chunks(), mimetype="text/plain")

    return instrument(app)


def test_flask_test_client_exports_spans_transactions_and_errors(backends: Backends) -> None:
    client = flask_app().test_client()  # how Flask users test: responses are read, never closed
    assert client.get("/users/7").status_code == 200  # only the status: the body is dropped unread
    boom = client.get("/boom")
    assert (boom.status_code, boom.data[:15]) == (500, b"<!doctype html>")
    assert client.get("/stream").data == b"one\ntwo\n"
    delivered = backends.delivered()
    by_name = {span.name: span for span in delivered.spans}
    assert sorted(by_name) == ["GET /boom", "GET /stream", "GET /users/{user_id}"]
    assert sorted(t["transaction"] for t in delivered.transactions) == sorted(by_name)
    assert by_name["GET /boom"].status == "ERROR"
    assert by_name["GET /boom"].attributes["error.type"] == "KeyError"
    assert delivered.errors_of(by_name["GET /boom"]) == ["KeyError: 'no such thing'"]
    assert len(delivered.events) == 1


def test_flask_streaming_body_that_raises_under_the_test_client(backends: Backends) -> None:
    client = flask_app().test_client()
    with pytest.raises(ConnectionAbortedError):
        client.get("/stream-fails").get_data()
    delivered = backends.delivered()
    span, transaction = delivered.one_request()
    assert span.name == "GET /stream-fails"
    assert span.status == "ERROR"
    assert span.attributes["http.response.status_code"] == 200  # the response had started
    assert delivered.errors_of(span) == ["ConnectionAbortedError: upstream went away"]


@pytest.mark.parametrize("sized", [False, True], ids=["iterator", "with-len"])
@pytest.mark.parametrize("closing", [False, True], ids=["never-closed", "closed"])
def test_werkzeug_client_with_and_without_closing(backends: Backends, closing: bool, sized: bool) -> None:
    body = SizedBody([b"a", b"b"]) if sized else CountingBody([b"a", b"b"])
    response = Client(bridge.BridgeMiddleware(serving(body))).get("/read")
    assert response.data == b"ab"
    assert body.closed == 1  # at exhaustion, before (and whether or not) the client closes
    if closing:
        response.close()
        assert body.closed == 1
    span, _ = backends.delivered().one_request()
    assert (span.name, span.status) == ("GET /read", "UNSET")


def test_werkzeug_client_body_raising_while_iterated_never_closed(backends: Backends) -> None:
    body = CountingBody([b"a", b"b", b"c"], fail_at=1)
    response = Client(bridge.BridgeMiddleware(serving(body))).get("/fails")
    with pytest.raises(RuntimeError, match="failed at chunk 1"):
        response.get_data()
    assert body.closed == 1  # by the failure: the client never closes
    delivered = backends.delivered()
    span, _ = delivered.one_request()
    assert span.status == "ERROR"
    assert delivered.errors_of(span) == ["RuntimeError: failed at chunk 1"]


def test_werkzeug_client_closing_before_the_body_is_read(backends: Backends) -> None:
    body = CountingBody([b"a", b"b", b"c"])
    response = Client(bridge.BridgeMiddleware(serving(body))).get("/early-close")
    response.close()  # the client gives up after the first chunk (werkzeug reads one ahead)
    assert body.closed == 1
    assert body.nexts_after_close == 0
    span, _ = backends.delivered().one_request()
    assert span.name == "GET /early-close"
