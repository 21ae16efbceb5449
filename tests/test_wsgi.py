"""BridgeMiddleware against the real SDK and the real OTLP exporter, decoded by opentelemetry-proto.

Apps are driven through werkzeug's test Client and its LintMiddleware (which checks both sides of the
WSGI contract), and the bridge's OTLP output is read from a loopback receiver after ``bridge.flush()``.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable
from wsgiref.util import FileWrapper

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import bridge
from tests.peers.otlp import OtlpReceiver, SpanView

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def chained(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("outer failure") from exc
    return []  # pragma: no cover


def client(app: Any, **hooks: Any) -> Client:
    # use_cookies=False: werkzeug's cookie jar would otherwise replace a Cookie header a test sends
    return Client(LintMiddleware(bridge.BridgeMiddleware(app, **hooks)), use_cookies=False)


def exported(receiver: OtlpReceiver) -> list[SpanView]:
    assert bridge.flush(5)
    return receiver.spans()


@pytest.fixture
def otlp(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, service_name="wsgi-tests")
    return otlp_receiver


def test_one_server_span_per_request_with_stable_http_conventions(otlp: OtlpReceiver) -> None:
    app = client(hello)
    for path in ("/a", "/b?x=1", "/c"):
        assert app.get(path, buffered=True).status_code == 200
    spans = exported(otlp)
    assert [s.name for s in spans] == ["GET /a", "GET /b", "GET /c"]
    assert {s.kind for s in spans} == {"SERVER"}
    assert len({s.trace_id for s in spans}) == 3
    second = spans[1]
    assert second.attributes["http.request.method"] == "GET"
    assert second.attributes["url.path"] == "/b"
    assert second.attributes["url.query"] == "x=1"
    assert second.attributes["http.response.status_code"] == 200
    assert second.status == "UNSET"
    assert second.resource["service.name"] == "wsgi-tests"
    assert second.scope == "bridge.wsgi"


def test_exception_from_the_call_is_recorded_and_reaches_the_server_unchanged(otlp: OtlpReceiver) -> None:
    raised: list[BaseException] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return chained(environ, start_response)
        except ValueError as exc:
            raised.append(exc)
            raise

    with pytest.raises(ValueError) as info:
        client(app).get("/boom")
    assert info.value is raised[0]
    [span] = exported(otlp)
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["http.response.status_code"] == 500
    [(name, event)] = span.events
    assert name == "exception"
    assert event["exception.type"] == "ValueError"
    assert event["exception.message"] == "outer failure"
    assert "Traceback (most recent call last)" in event["exception.stacktrace"]
    assert "The above exception was the direct cause" in event["exception.stacktrace"]
    assert "KeyError: 'missing'" in event["exception.stacktrace"]
    assert '{}["missing"]' in event["exception.stacktrace"]  # source lines, as traceback.format_exception
    assert event["exception.escaped"] == "True"
    assert len(event["sentry.event_id"]) == 32


class CountingBody:
    """A response body that counts close() calls and can fail while iterating or closing."""

    def __init__(self, chunks: list[bytes], fail_at: int = -1, fail_in_close: bool = False) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.fail_in_close = fail_in_close
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError(f"failed at chunk {index}")
            yield chunk

    def close(self) -> None:
        self.closed += 1
        if self.fail_in_close:
            raise OSError("close failed")


def body_app(body: CountingBody) -> Callable[..., Iterable[bytes]]:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def test_close_is_called_exactly_once(otlp: OtlpReceiver) -> None:
    body = CountingBody([b"a", b"b"])
    response = client(body_app(body)).get("/", buffered=True)
    assert response.data == b"ab"
    assert body.closed == 1
    [span] = exported(otlp)
    assert span.status == "UNSET"


def test_exception_while_iterating_is_recorded_and_close_still_called_once(otlp: OtlpReceiver) -> None:
    body = CountingBody([b"a", b"b", b"c"], fail_at=1)
    with pytest.raises(RuntimeError, match="failed at chunk 1"):
        client(body_app(body)).get("/stream", buffered=True)
    assert body.closed == 1
    [span] = exported(otlp)
    assert span.status == "ERROR"
    assert span.attributes["http.response.status_code"] == 200  # the response had started
    assert span.events[0][1]["exception.type"] == "RuntimeError"


def test_exception_from_close_is_recorded_and_raised(otlp: OtlpReceiver) -> None:
    body = CountingBody([b"a"], fail_in_close=True)
    with pytest.raises(OSError, match="close failed"):
        client(body_app(body)).get("/", buffered=True)
    assert body.closed == 1
    [span] = exported(otlp)
    assert span.status == "ERROR"
    assert span.events[0][1]["exception.type"] == "OSError"


def test_close_twice_by_a_careless_server_reaches_the_app_once(otlp: OtlpReceiver) -> None:
    body = CountingBody([b"a"])
    middleware = bridge.BridgeMiddleware(body_app(body))
    result = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}, lambda *a: None)
    assert list(result) == [b"a"]
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]
    assert body.closed == 1
    assert len(exported(otlp)) == 1


def test_a_list_body_is_iterated_at_c_speed_and_ends_the_span_when_exhausted(otlp: OtlpReceiver) -> None:
    middleware = bridge.BridgeMiddleware(hello)
    result = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}, lambda *a: None)
    assert type(iter(result)) is itertools.chain  # a C iterator over the list: no per-chunk work of ours
    assert len(result) == 1  # type: ignore[arg-type]
    assert next(result) == b"hello"  # type: ignore[call-overload]
    assert exported(otlp) == []  # the last chunk is out, but the server has not asked past it yet
    assert list(result) == []
    assert len(exported(otlp)) == 1  # exhausted: ended, without close()
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]
    assert len(exported(otlp)) == 1


def test_streaming_span_ends_after_the_last_chunk(otlp: OtlpReceiver) -> None:
    produced: list[int] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for index in range(3):
            produced.append(time.time_ns())
            yield b"chunk %d\n" % index
        produced.append(time.time_ns())

    response = client(app).get("/stream", buffered=True)
    assert response.data.count(b"chunk") == 3
    [span] = exported(otlp)
    assert span.start_time_unix_nano <= produced[0]
    assert span.end_time_unix_nano >= produced[-1]


def test_file_wrapper_passes_through_untouched_and_the_span_ends_on_close(otlp: OtlpReceiver) -> None:
    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](io.BytesIO(b"file body"))
        return wrapper

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/file",
        "wsgi.url_scheme": "http",
        "wsgi.file_wrapper": FileWrapper,
    }
    result = bridge.BridgeMiddleware(app)(environ, lambda *a: None)
    assert type(result) is FileWrapper
    assert b"".join(result) == b"file body"
    assert otlp.spans() == [] and bridge.flush(5) and otlp.spans() == []  # not ended before close()
    result.close()  # type: ignore[attr-defined]
    [span] = exported(otlp)
    assert span.name == "GET /file"


def test_hooks(otlp: OtlpReceiver) -> None:
    seen: dict[str, Any] = {}

    def response_hook(span: Any, environ: Environ, status: str, headers: list[tuple[str, str]]) -> None:
        seen["response"] = (status, dict(headers)["Content-Type"])
        span.set_attribute("app.response_hook", True)

    def request_hook(span: Any, environ: Environ) -> None:
        span.set_attribute("app.request_hook", environ["PATH_INFO"])

    app = client(
        hello,
        skip=lambda environ: environ["PATH_INFO"] == "/health",
        identify_user=lambda environ: "user-42",
        session_id=lambda environ: "session-7",
        view_name=lambda environ: "/users/{id}" if environ["PATH_INFO"].startswith("/users/") else "myapp.views.home",
        request_hook=request_hook,
        response_hook=response_hook,
    )
    assert app.get("/health", buffered=True).status_code == 200
    assert app.get("/users/17", buffered=True).status_code == 200
    assert app.get("/", buffered=True).status_code == 200
    users, home = exported(otlp)
    assert users.name == "GET /users/{id}"
    assert users.attributes["http.route"] == "/users/{id}"
    assert users.attributes["enduser.id"] == "user-42"
    assert users.attributes["session.id"] == "session-7"
    assert users.attributes["app.request_hook"] == "/users/17"
    assert users.attributes["app.response_hook"] is True
    assert seen["response"] == ("200 OK", "text/plain")
    assert home.name == "myapp.views.home"
    assert home.attributes["sentry.transaction_source"] == "component"
    assert "http.route" not in home.attributes


def test_hooks_that_raise_are_ignored(otlp: OtlpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("hook bug")

    app = client(
        hello,
        skip=broken,
        identify_user=broken,
        session_id=broken,
        view_name=broken,
        request_hook=broken,
        response_hook=broken,
    )
    response = app.get("/x", buffered=True)
    assert (response.status_code, response.data) == (200, b"hello")
    [span] = exported(otlp)
    assert span.name == "GET /x"
    assert "enduser.id" not in span.attributes
    assert sum("hook raised" in r.getMessage() for r in caplog.records) == 6


def test_scope_isolation_across_threads(otlp: OtlpReceiver) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        me = environ["PATH_INFO"].strip("/")
        bridge.set_tag("request", me)
        barrier.wait(5)  # every request is inside the app at once
        bridge.set_user({"id": me, "email": f"{me}@example.com"})
        barrier.wait(5)
        bridge.set_tag("again", me)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [me.encode()]

    middleware = LintMiddleware(bridge.BridgeMiddleware(app))
    results: dict[str, bytes] = {}

    def worker(name: str) -> None:
        results[name] = Client(middleware).get(f"/{name}", buffered=True).data

    pool = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(10)
    assert results == {f"t{i}": f"t{i}".encode() for i in range(threads)}
    spans = exported(otlp)
    assert len(spans) == threads
    for span in spans:
        me = span.name.split("/")[1]
        assert span.attributes["sentry.tag.request"] == me
        assert span.attributes["sentry.tag.again"] == me
        assert span.attributes["enduser.id"] == me
        assert span.attributes["user.email"] == f"{me}@example.com"


def test_capture_exception_and_message_are_handled_events(otlp: OtlpReceiver) -> None:
    ids: list[Any] = []

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            int("not a number")
        except ValueError:
            ids.append(bridge.capture_exception())
        ids.append(bridge.capture_message("careful", level="warning"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    assert client(app).get("/", buffered=True).status_code == 200
    [span] = exported(otlp)
    assert span.status == "UNSET"  # handled: the request did not fail
    (exc_name, exc_event), (msg_name, msg_event) = span.events
    assert exc_name == "exception" and exc_event["exception.escaped"] == "False"
    assert exc_event["exception.type"] == "ValueError"
    assert msg_name == "sentry.message"
    assert msg_event["sentry.message.text"] == "careful"
    assert msg_event["sentry.message.level"] == "warning"
    assert ids == [exc_event["sentry.event_id"], msg_event["sentry.event_id"]]


def test_scope_functions_outside_a_request_do_nothing_and_never_raise() -> None:
    bridge.set_tag("k", "v")
    bridge.set_user({"id": "1"})
    assert bridge.capture_exception() is None
    assert bridge.capture_message("x") is None


def test_sdk_disabled_leaves_the_app_untouched(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    instance = bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    assert not instance.enabled
    body = CountingBody([b"plain"])
    middleware = bridge.BridgeMiddleware(body_app(body))
    result = middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}, lambda *a: None)
    assert result is body  # the app's own object, not a wrapper
    assert client(hello).get("/", buffered=True).data == b"hello"
    assert bridge.flush(1)
    assert otlp_receiver.requests == []


def test_init_twice_replaces_and_never_doubles_exporters(otlp_receiver: OtlpReceiver) -> None:
    with OtlpReceiver() as first:
        bridge.init(otlp_endpoint=first.endpoint)
        app = client(hello)
        app.get("/one", buffered=True)
        bridge.init(otlp_endpoint=otlp_receiver.endpoint)  # flushes the first configuration
        assert [s.name for s in first.spans()] == ["GET /one"]
        app.get("/two", buffered=True)
        assert [s.name for s in exported(otlp_receiver)] == ["GET /two"]
        assert [s.name for s in first.spans()] == ["GET /one"]


def test_privacy_by_default_on_the_otlp_side(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "cookie,authorization,x-app")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, otlp_compression="none")
    client(hello).get(
        "/p?password=CANARY-PW&token=CANARY-TOKEN&page=2",
        headers={"Cookie": "session=CANARY-COOKIE", "Authorization": "Bearer CANARY-AUTH", "X-App": "kept"},
        environ_base={"REMOTE_ADDR": "203.0.113.77"},
        buffered=True,
    )
    [span] = exported(otlp_receiver)
    raw = b"".join(r.data for r in otlp_receiver.requests)
    for canary in (b"CANARY-PW", b"CANARY-TOKEN", b"CANARY-COOKIE", b"CANARY-AUTH", b"203.0.113.77"):
        assert canary not in raw
    assert span.attributes["http.request.header.x_app"] == ["kept"]
    assert "page=2" in span.attributes["url.query"]


def test_send_default_pii_keeps_the_client_address(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, send_default_pii=True)
    client(hello).get("/", environ_base={"REMOTE_ADDR": "203.0.113.77"}, buffered=True)
    [span] = exported(otlp_receiver)
    assert span.attributes["client.address"] == "203.0.113.77"


def test_excluded_urls(otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_WSGI_EXCLUDED_URLS", "healthz,/static/.*")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    app = client(hello)
    for path in ("/healthz", "/static/app.js", "/page"):
        app.get(path, buffered=True)
    assert [s.name for s in exported(otlp_receiver)] == ["GET /page"]


def test_incoming_traceparent_is_continued(otlp: OtlpReceiver) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    client(hello).get("/", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}, buffered=True)
    [span] = exported(otlp)
    assert span.trace_id == trace_id
    assert span.parent_span_id == "b7ad6b7169203331"


def test_the_bridges_own_exports_never_become_spans(otlp: OtlpReceiver) -> None:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()  # the OTLP exporter posts with requests
    try:
        app = client(hello)
        app.get("/first", buffered=True)
        assert bridge.flush(5)  # this export would be a CLIENT span if it were traced...
        app.get("/second", buffered=True)
        spans = exported(otlp)  # ...and it would show up in this one
    finally:
        RequestsInstrumentor().uninstrument()
    assert [(s.name, s.kind) for s in spans] == [("GET /first", "SERVER"), ("GET /second", "SERVER")]


def test_url_path_and_query_under_a_server_without_request_uri(otlp: OtlpReceiver) -> None:
    """wsgiref sets neither RAW_URI nor REQUEST_URI; the path still comes from the WSGI environ."""
    import http.client
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with make_server("127.0.0.1", 0, bridge.BridgeMiddleware(hello), handler_class=Quiet) as server:
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
        connection.request("GET", "/a/b?page=2&token=CANARY")
        assert connection.getresponse().read() == b"hello"
        connection.close()
        thread.join(5)  # handle_request returns once the response is closed: the span has ended
    [span] = exported(otlp)
    assert span.attributes["url.path"] == "/a/b"
    assert "page=2" in span.attributes["url.query"] and "CANARY" not in span.attributes["url.query"]
