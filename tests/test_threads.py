"""8 threads x 200 requests, each with its own tag, user, handled error, message or escaping error: every
Sentry event (errors, messages, transactions) and every OTLP span carries its own request's values only.

The interpreter's thread switch interval is cut to a microsecond for the run, so requests interleave at
nearly every bytecode instead of running in 5 ms turns.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Callable
from urllib.parse import parse_qs

import pytest

import bridge
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

THREADS = 8
REQUESTS = 200


class Escaped(Exception):
    pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    me = parse_qs(environ["QUERY_STRING"])["id"][0]
    number = int(me.split("-")[1])
    bridge.set_tag("request", me)
    bridge.set_user({"id": me, "email": f"{me}@example.com"})
    if number % 4 == 1:
        try:
            raise ValueError(f"handled in {me}")
        except ValueError:
            bridge.capture_exception()
    if number % 4 == 2:
        bridge.capture_message(f"message from {me}")
    bridge.set_tag("again", me)
    if number % 4 == 3:
        raise Escaped(f"escaped from {me}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [me.encode()]


def environ(me: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/work",
        "QUERY_STRING": f"id={me}",
        "REQUEST_URI": f"/work?id={me}",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.multithread": True,
    }


@pytest.fixture
def switch_often() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_concurrent_requests_never_see_each_others_tags_users_or_errors(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver, switch_often: None
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, sentry_queue_size=10_000)
    middleware = bridge.BridgeMiddleware(app)
    answers: dict[str, bytes] = {}
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> None:
        start.wait(10)
        for request in range(REQUESTS):
            me = f"t{thread}-{request}"
            try:
                body = middleware(environ(me), lambda *args: None)
                answers[me] = b"".join(body)
                body.close()  # type: ignore[attr-defined]
            except Escaped as exc:
                answers[me] = str(exc).encode()

    pool = [threading.Thread(target=worker, args=(thread,)) for thread in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    assert len(answers) == THREADS * REQUESTS
    assert all(answer.endswith(me.encode()) for me, answer in answers.items())
    assert bridge.flush(30)

    spans = otlp_receiver.spans()
    assert len(spans) == THREADS * REQUESTS
    for span in spans:
        me = span.attributes["url.query"].split("=")[1]
        assert span.attributes["sentry.tag.request"] == span.attributes["sentry.tag.again"] == me
        assert (span.attributes["enduser.id"], span.attributes["user.email"]) == (me, f"{me}@example.com")
        for _, event in span.events:
            assert me in (event.get("exception.message") or event.get("sentry.message.text") or "")

    transactions = sentry_receiver.transactions()
    assert len(transactions) == THREADS * REQUESTS
    events = sentry_receiver.events()
    assert len(events) == 3 * THREADS * REQUESTS // 4  # handled, message, escaped: three requests in four
    for event in transactions + events:
        me = event["request"]["query_string"].split("=")[1]
        assert event["tags"]["request"] == me
        assert event["user"] == {"id": me, "email": f"{me}@example.com"}
        if "exception" in event:
            assert event["exception"]["values"][-1]["value"].endswith(me)
        if "logentry" in event:
            assert event["logentry"]["formatted"] == f"message from {me}"
