"""Bad input to the request lifecycle: a body whose ``len()`` raises, an iterator that yields after
``close()``, a ``close()`` that raises every time, a server closing from another thread (or several at
once). Each time: no exception of the bridge's own, the span ended once (one OTLP span, one Sentry
transaction, no "end() on an ended span" warning), the app's ``close()`` called once."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Callable

import pytest

import bridge
from tests.lifecycle_support import Backends, CountingBody, SizedBody
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

Environ = dict[str, Any]


@pytest.fixture
def backends(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> Backends:
    return Backends(otlp_receiver, sentry_receiver)


@pytest.fixture(autouse=True)
def _no_double_end(caplog: pytest.LogCaptureFixture) -> Any:
    yield
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]  # the SDK's double-end warning


def call(body: Iterable[bytes], path: str = "/") -> Any:
    """What a WSGI server does first: call the wrapped app; returns the body it got back."""

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.url_scheme": "http", "SERVER_NAME": "test"}
    return bridge.BridgeMiddleware(app)(environ, lambda *args: None)


def test_a_body_whose_len_raises(backends: Backends) -> None:
    failure = ValueError("len() is broken")
    body = SizedBody([b"a", b"b"], len_error=failure)
    result = call(body, "/len")
    with pytest.raises(ValueError) as info:
        len(result)  # the server asks; it gets the app's own exception, as without the bridge
    assert info.value is failure
    assert [chunk for chunk in result] == [b"a", b"b"]  # (list() would ask len() again, as a size hint)
    result.close()
    assert body.closed == 1
    span, _ = backends.delivered().one_request()
    assert (span.name, span.status) == ("GET /len", "UNSET")  # asking len() is not the request failing


def test_a_body_without_len_gets_a_wrapper_without_len(backends: Backends) -> None:
    result = call(CountingBody([b"a"]))
    assert not hasattr(result, "__len__")  # servers that test hasattr(body, "__len__") see the app's answer
    sized = call(SizedBody([b"a", b"b"]))
    assert len(sized) == 2
    assert (list(result), list(sized)) == ([b"a"], [b"a", b"b"])
    assert len(backends.delivered().spans) == 2


def test_an_iterator_that_yields_after_close(backends: Backends) -> None:
    body = CountingBody([b"a", b"b", b"c"])
    result = call(body, "/after-close")
    assert next(result) == b"a"
    result.close()  # the server gives up early (the client went away)
    assert list(result) == []  # a careless server iterating on: nothing, and the app's iterator is left alone
    assert next(result, None) is None
    result.close()
    assert (body.closed, body.nexts_after_close) == (1, 0)
    span, _ = backends.delivered().one_request()
    assert span.name == "GET /after-close"


def test_a_close_that_raises_every_time(backends: Backends) -> None:
    body = CountingBody([b"a"], fail_in_close=OSError("close failed"))
    result = call(body, "/close-fails")
    assert next(result) == b"a"
    with pytest.raises(OSError, match="close failed"):
        result.close()  # re-raised to the server
    result.close()  # a second close() from the server: the app's is not called again, nothing raised
    assert body.closed == 1
    delivered = backends.delivered()
    span, _ = delivered.one_request()
    assert span.status == "ERROR" and span.attributes["error.type"] == "OSError"
    assert delivered.errors_of(span) == ["OSError: close failed"]  # an error of that trace


def test_a_close_that_raises_at_exhaustion(backends: Backends) -> None:
    body = CountingBody([b"a"], fail_in_close=OSError("close failed"))
    result = call(body, "/close-fails-at-end")
    assert next(result) == b"a"
    assert next(result, None) is None  # exhausted: the app's close() runs now; the iteration ends normally
    assert body.closed == 1
    with pytest.raises(OSError, match="close failed"):
        result.close()  # where the server would have met it without the bridge
    result.close()
    assert body.closed == 1
    delivered = backends.delivered()
    span, _ = delivered.one_request()
    assert delivered.errors_of(span) == ["OSError: close failed"]


def test_a_body_raising_and_its_close_raising_too(backends: Backends) -> None:
    body = CountingBody([b"a", b"b"], fail_at=1, fail_in_close=OSError("close failed"))
    result = call(body, "/both-fail")
    assert next(result) == b"a"
    with pytest.raises(RuntimeError, match="failed at chunk 1"):
        next(result)  # the iteration's own exception, as without the bridge
    with pytest.raises(OSError, match="close failed"):
        result.close()  # then close()'s, from close()
    assert body.closed == 1
    delivered = backends.delivered()
    span, _ = delivered.one_request()
    assert sorted(delivered.errors_of(span)) == ["OSError: close failed", "RuntimeError: failed at chunk 1"]


@pytest.mark.parametrize("kind", ["iterator", "list"])
def test_close_from_other_threads_at_once(backends: Backends, kind: str) -> None:
    body = CountingBody([b"a", b"b"])
    result = call([b"a", b"b"] if kind == "list" else body, f"/threads-{kind}")
    assert next(result) == b"a"  # iterated here...
    threads = 8
    barrier = threading.Barrier(threads)
    raised: list[BaseException] = []

    def closer() -> None:
        barrier.wait(5)
        try:
            result.close()  # ...closed there, by eight threads at once
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            raised.append(exc)

    pool = [threading.Thread(target=closer) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(10)
    assert raised == []
    assert list(result) == ([b"b"] if kind == "list" else [])  # a list's chunks are data: no app code runs
    if kind == "iterator":
        assert body.closed == 1
    span, _ = backends.delivered().one_request()
    assert span.name == f"GET /threads-{kind}"


def test_exhaustion_in_one_thread_and_close_in_another(backends: Backends) -> None:
    body = CountingBody([b"a"])
    result = call(body, "/handoff")
    done = threading.Event()

    def iterate() -> None:
        assert list(result) == [b"a"]
        done.set()

    worker = threading.Thread(target=iterate)
    worker.start()
    worker.join(10)
    assert done.is_set()
    result.close()
    assert body.closed == 1
    backends.delivered().one_request()
