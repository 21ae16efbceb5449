"""Shared parts of the fault tests (tests/test_faults_sentry.py, tests/test_faults_otlp.py).

Every fault is served by a real HTTP server on loopback (the receivers' ``responder``, or no server at
all for "refused"): what a backend that is down, slow, rate-limiting or broken answers. The app is a
small router whose views also use the per-request API (tags, user, handled errors, messages), so a fault
reaching any of those would show up as a changed response or an exception in the app.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional

from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import bridge
from tests.httpserver import Reply, Request

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

# name -> the fault's answer (None: nothing listens, connection refused)
FAULTS: dict[str, Optional[Callable[[Request], Reply]]] = {
    "refused": None,
    "never-answers": lambda request: Reply(hang=True),
    "answers-after-10s": lambda request: Reply(200, delay=10.0),
    "429-retry-after": lambda request: Reply(429, {"Retry-After": "1"}),
    "429-sentry-rate-limits": lambda request: Reply(
        429, {"X-Sentry-Rate-Limits": "1:transaction;error;span:key", "Retry-After": "1"}
    ),
    "413": lambda request: Reply(413, {"Content-Type": "text/plain"}, b"too large"),
    "500": lambda request: Reply(500, {"Content-Type": "text/plain"}, b"internal error"),
    "200-garbage": lambda request: Reply(200, {"Content-Type": "application/json"}, b"\x00\xff{not json<html>"),
}
SLOW = frozenset({"never-answers", "answers-after-10s"})
RATE_LIMITED = frozenset({"429-retry-after", "429-sentry-rate-limits"})
DELIVERED = frozenset({"200-garbage"})  # a 2xx is a success, whatever the body

BACKEND_TIMEOUT = 1.0  # otlp_timeout and sentry_timeout in these tests: a hung backend costs this per request


class AppError(Exception):
    pass


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """``/ok``: 200 with a tag and a user; ``/handled``: a handled error and a message; ``/boom``: raises."""
    path = environ["PATH_INFO"]
    bridge.set_tag("path", path)
    bridge.set_user({"id": "user-" + path.strip("/")})
    if path == "/boom":
        raise AppError("the app failed")
    if path == "/handled":
        try:
            int("not a number")
        except ValueError:
            bridge.capture_exception()
        bridge.capture_message("handled it", level="warning")
    body = f"served {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


PATHS = ("/ok", "/handled", "/boom")
# What the Sentry leg sends for PATHS: one transaction per request; errors: the handled one, the message
# (an "error" item too) and the escaped one.
ITEMS_PER_ROUND = {"transaction": 3, "error": 3}


def serve(application: Any, path: str) -> tuple[Any, ...]:
    """One request through werkzeug's client (with its WSGI linter): status, headers, body, or the exception."""
    client = Client(LintMiddleware(application))
    try:
        response = client.get(path, buffered=True)
    except AppError as exc:
        return ("raised", type(exc), str(exc))
    return (response.status, sorted(response.headers.items()), response.get_data())


# What the bare app serves, taken at import, when no bridge is configured (with one, the app's own
# capture_exception() outside a traced request would send an event of its own).
assert bridge.setup.active() is None
BARE = {path: serve(app, path) for path in PATHS}


def assert_responses_unchanged(round_: int = 1) -> None:
    """Every path served through the bridge exactly as the bare app serves it (no exception from the bridge).

    The query string ``round=N`` marks what each round sent (the app ignores it).
    """
    wrapped = bridge.BridgeMiddleware(app)
    for path in PATHS:
        assert serve(wrapped, f"{path}?round={round_}") == BARE[path], path


ENVIRON: Environ = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/ok",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def drive(application: Any, count: int, path: str = "/ok") -> None:
    """``count`` requests straight through ``application`` with a minimal environ (fast: no test client)."""
    for _ in range(count):
        environ = dict(ENVIRON, PATH_INFO=path)
        environ["wsgi.input"] = io.BytesIO(b"")
        environ["wsgi.errors"] = io.StringIO()
        body = application(environ, _start_response)
        try:
            for _chunk in body:
                pass
        finally:
            body.close()


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (a state with no event to wait on, like a rate limit running out) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def discarded(reports: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Client reports summed by (reason, category)."""
    totals: dict[tuple[str, str], int] = {}
    for report in reports:
        for entry in report["discarded_events"]:
            key = (entry["reason"], entry["category"])
            totals[key] = totals.get(key, 0) + entry["quantity"]
    return totals


class Stopwatch:
    """``with Stopwatch() as watch: ...``; ``watch.seconds`` afterwards."""

    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
