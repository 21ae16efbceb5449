"""Drive an example app over real HTTP (wsgiref on loopback, as the examples serve themselves) and collect
the replies and the OTLP side (the Sentry side is read from its receiver or Bugsink after the same flush).

``drive_example(application, receiver)`` serves the app, sends every request of ``REQUESTS`` (or the ones
given) with http.client, stops the server (which waits for the request in progress, so every response
has been closed and every span has ended), flushes the bridge, and returns ``Results``: each request's
reply and its decoded server span, looked up by path.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional
from wsgiref.simple_server import WSGIRequestHandler, make_server

import bridge
from tests.peers.otlp import OtlpReceiver, SpanView

# (path, extra request headers)
Request = tuple[str, Mapping[str, str]]
REQUESTS: Sequence[Request] = (
    ("/users/7", {}),
    ("/reports/42", {}),
    ("/checkout", {}),
    ("/stream", {}),
    ("/nope", {}),
)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Results:
    replies: dict[str, Reply] = field(default_factory=dict)
    spans: dict[str, SpanView] = field(default_factory=dict)  # the request's SERVER span, by url.path
    all_spans: list[SpanView] = field(default_factory=list)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def served(application: Any) -> Iterator[int]:
    """wsgiref on 127.0.0.1 (a free port) in a thread; on exit, returns once the last request is done."""
    server = make_server("127.0.0.1", 0, application, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()  # waits for serve_forever, which handles one request at a time, to return
        thread.join(10)
        server.server_close()


def get(port: int, path: str, headers: Optional[Mapping[str, str]] = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, response.read(), {k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def send(port: int, requests: Sequence[Request] = REQUESTS) -> dict[str, Reply]:
    return {path: get(port, path, headers) for path, headers in requests}


def collect(replies: dict[str, Reply], receiver: OtlpReceiver) -> Results:
    """The replies and what the receiver holds, once the sender has flushed (or exited)."""
    results = Results(replies=replies, all_spans=receiver.spans())
    for span in results.all_spans:
        if span.kind == "SERVER":
            path = span.attributes["url.path"]
            assert path not in results.spans, f"two server spans for {path}"
            results.spans[path] = span
    return results


def drive_example(application: Any, receiver: OtlpReceiver, requests: Sequence[Request] = REQUESTS) -> Results:
    with served(application) as port:
        replies = send(port, requests)
    assert bridge.flush(5)
    return collect(replies, receiver)
