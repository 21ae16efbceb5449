"""Broken WSGI apps: the server sees exactly what it would see without the bridge.

Each app breaks the WSGI contract (or uses a rarely used part of it) in one way. It is served twice by
the same real WSGI servers, once bare and once inside ``BridgeMiddleware`` (both legs exporting to real
receivers): wsgiref's ``SimpleHandler`` (what the server writes and logs) and werkzeug's ``run_wsgi_app``
(what escapes to the caller). The outcomes must be identical, close() must reach the app as often, and
after each request no span or request scope may be left current on the thread.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional
from wsgiref.handlers import SimpleHandler

import pytest
from opentelemetry import trace
from werkzeug.test import EnvironBuilder, run_wsgi_app

import bridge
from bridge import scope
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Any]


class Abort(BaseException):
    """Not an Exception: what KeyboardInterrupt or a server's own abort signal looks like to the app."""


class Body:
    """A response body that records close() calls; ``chunks`` may hold anything, ``close_raises`` fails close()."""

    def __init__(self, chunks: list[Any], close_raises: Optional[BaseException] = None) -> None:
        self.chunks = chunks
        self.close_raises = close_raises
        self.closed = 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed += 1
        if self.close_raises is not None:
            raise self.close_raises


def broken_apps() -> dict[str, Callable[[list[Body]], App]]:
    """Name -> factory(bodies) -> app; bodies collects every Body the app hands out (to count close())."""

    def respond(bodies: list[Body], chunks: list[Any], close_raises: Optional[BaseException] = None) -> Body:
        body = Body(chunks, close_raises)
        bodies.append(body)
        return body

    def returns_none(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return None

        return app

    def returns_int(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return 42

        return app

    def returns_bytes(bodies: list[Body]) -> App:  # iterating bytes yields ints
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return b"abc"

        return app

    def close_raises(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return respond(bodies, [b"a", b"b"], OSError("close failed"))

        return app

    def close_raises_base_exception(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return respond(bodies, [b"a"], Abort("abort in close"))

        return app

    def start_response_twice(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("201 Created", [("Content-Type", "text/html")])
            return respond(bodies, [b"twice"])

        return app

    def start_response_again_with_exc_info(bodies: list[Body]) -> App:  # legal before the body is sent
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            try:
                raise ValueError("handled by the app")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            return respond(bodies, [b"error page"])

        return app

    def exc_info_after_the_body_started(bodies: list[Body]) -> App:  # the server must re-raise it
        def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first"
            try:
                raise LookupError("too late")
            except LookupError:
                start_response("500 Internal Server Error", [], sys.exc_info())
            yield b"never"

        return app

    def yields_str(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return respond(bodies, [b"ok", "text, not bytes"])

        return app

    def yields_none(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return respond(bodies, [None])

        return app

    def never_starts_the_response(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            return respond(bodies, [b"no status"])

        return app

    def raises_base_exception(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            raise Abort("abort before the response")

        return app

    def raises_system_exit_while_iterating(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial"
            raise SystemExit(3)

        return app

    def iter_raises(bodies: list[Body]) -> App:
        class Unreadable:
            def __iter__(self) -> Iterator[bytes]:
                raise RuntimeError("cannot iterate")

            def close(self) -> None:
                pass

        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return Unreadable()

        return app

    def lazy_generator(bodies: list[Body]) -> App:  # legal: start_response from inside the generator
        def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
            start_response("202 Accepted", [("Content-Type", "text/plain"), ("X-Lazy", "1")])
            yield b"late "
            yield b"start"

        return app

    def uses_write(bodies: list[Body]) -> App:  # legal, if old-fashioned: the write() callable
        def app(environ: Environ, start_response: StartResponse) -> Any:
            write = start_response("200 OK", [("Content-Type", "text/plain")])
            write(b"written ")
            return respond(bodies, [b"returned"])

        return app

    def bad_status_line(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("OK", [("Content-Type", "text/plain")])
            return respond(bodies, [b"status without a code"])

        return app

    def bad_headers(bodies: list[Body]) -> App:
        def app(environ: Environ, start_response: StartResponse) -> Any:
            start_response("200 OK", [("Content-Type", 7), ("X-Bytes", b"v")])  # values must be str
            return respond(bodies, [b"x"])

        return app

    return {
        f.__name__: f
        for f in (
            returns_none,
            returns_int,
            returns_bytes,
            close_raises,
            close_raises_base_exception,
            start_response_twice,
            start_response_again_with_exc_info,
            exc_info_after_the_body_started,
            yields_str,
            yields_none,
            never_starts_the_response,
            raises_base_exception,
            raises_system_exit_while_iterating,
            iter_raises,
            lazy_generator,
            uses_write,
            bad_status_line,
            bad_headers,
        )
    }


def exception(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


@dataclass(frozen=True)
class Served:
    """What a server saw: its output bytes and logged errors (wsgiref), or the response or escape (werkzeug)."""

    output: Any
    errors: tuple[tuple[str, str], ...]
    escaped: Optional[tuple[str, str]]
    closed: tuple[int, ...]


class _Handler(SimpleHandler):
    origin_server = False  # CGI-style "Status:" output: no Date header to differ between runs
    os_environ: dict[str, str] = {}  # type: ignore[assignment]  # not this process's environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged: list[tuple[str, str]] = []

    def log_exception(self, exc_info: Any) -> None:
        self.logged.append(exception(exc_info[1]))


def environ() -> Environ:
    return EnvironBuilder(path="/broken", method="GET").get_environ()


def serve_wsgiref(app: App) -> tuple[Any, tuple[tuple[str, str], ...], Optional[tuple[str, str]]]:
    output = io.BytesIO()
    handler = _Handler(io.BytesIO(b""), output, io.StringIO(), environ(), multithread=False, multiprocess=False)
    escaped = None
    try:
        handler.run(app)
    except BaseException as exc:  # noqa: B036 - an Abort must be compared too
        escaped = exception(exc)
    return output.getvalue(), tuple(handler.logged), escaped


def serve_werkzeug(app: App) -> tuple[Any, Optional[tuple[str, str]]]:
    try:
        body, status, headers = run_wsgi_app(app, environ(), buffered=True)
        return (status, list(headers.items()), b"".join(body)), None
    except BaseException as exc:  # noqa: B036
        return None, exception(exc)


def serve(factory: Callable[[list[Body]], App], wrap: bool) -> tuple[Served, Served]:
    results = []
    for server in (serve_wsgiref, serve_werkzeug):
        bodies: list[Body] = []
        app = factory(bodies)
        served = server(bridge.BridgeMiddleware(app) if wrap else app)
        if server is serve_wsgiref:
            output, errors, escaped = served  # type: ignore[misc]
        else:
            output, escaped = served  # type: ignore[misc]
            errors = ()
        results.append(Served(output, errors, escaped, tuple(body.closed for body in bodies)))
        # Nothing of the request may stay current on this thread.
        assert not trace.get_current_span().get_span_context().is_valid
        assert scope.current_scope() is None
    return results[0], results[1]


@pytest.fixture
def both(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> tuple[OtlpReceiver, SentryReceiver]:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, service_name="broken-apps")
    return otlp_receiver, sentry_receiver


@pytest.mark.parametrize("name", list(broken_apps()))
def test_the_server_sees_what_it_would_see_without_the_bridge(
    name: str, both: tuple[OtlpReceiver, SentryReceiver]
) -> None:
    otlp, sentry = both
    factory = broken_apps()[name]
    bare = serve(factory, wrap=False)
    wrapped = serve(factory, wrap=True)
    assert wrapped == bare
    # Each request became one SERVER span (both ended), and nothing invalid went to Sentry.
    assert bridge.flush(5)
    spans = otlp.spans()
    assert [span.kind for span in spans] == ["SERVER", "SERVER"], [span.name for span in spans]
    assert len(sentry.transactions()) == 2
    sentry.assert_all_valid()


def test_a_base_exception_leaves_nothing_current_and_the_next_request_is_a_new_trace(
    both: tuple[OtlpReceiver, SentryReceiver],
) -> None:
    otlp, sentry = both
    apps = broken_apps()
    serve(apps["raises_base_exception"], wrap=True)
    serve(apps["lazy_generator"], wrap=True)
    assert bridge.flush(5)
    spans = otlp.spans()
    assert len(spans) == 4 and {span.kind for span in spans} == {"SERVER"}
    assert all(span.parent_span_id == "" for span in spans)
    assert len({span.trace_id for span in spans}) == 4
    aborted = [span for span in spans if span.status == "ERROR"]
    assert len(aborted) == 2 and all(span.attributes["error.type"] == "Abort" for span in aborted)
    errors = sentry.events()
    assert [event["exception"]["values"][-1]["type"] for event in errors] == ["Abort", "Abort"]


def test_system_exit_zero_is_not_an_error(both: tuple[OtlpReceiver, SentryReceiver]) -> None:
    otlp, sentry = both

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        bridge.BridgeMiddleware(app)(environ(), lambda *a: None)
    assert bridge.flush(5)
    [span] = otlp.spans()
    assert span.status == "UNSET" and span.events == []
    assert sentry.events() == []
