"""The app of tests/test_lifecycle_servers.py, served by real servers: ``tests.lifecycle_server_app:application``.

``bridge.init()`` runs at import, from the environment. Every body kind, each request numbered by ``?id=N``;
the app counts the ``close()`` calls each body gets, per id:

- ``/list``: a list body (no close); ``/generator``: an iterator with ``close()``; ``/sized``: the same
  with ``len()``; ``/file``: ``wsgi.file_wrapper`` over a file whose ``close()`` is counted;
- ``/fails``: a body raising at its second chunk; ``/close-fails``: a body whose ``close()`` raises;
- ``/closes?expect=N``: waits (on a condition, 10 s at most) until N closes were counted, then answers them
  as JSON ``{id: count}``; ``/flush``: ``bridge.flush()``, 200 if it delivered everything.

``python -m tests.lifecycle_server_app PORT`` serves it with wsgiref (as ``runserver`` would).
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

import bridge

bridge.init()

_closes: Counter[str] = Counter()
_counted = threading.Condition()


def _count(request_id: str) -> None:
    with _counted:
        _closes[request_id] += 1
        _counted.notify_all()


class Body:
    def __init__(self, request_id: str, fail_at: int = -1, fail_in_close: bool = False) -> None:
        self.request_id = request_id
        self.fail_at = fail_at
        self.fail_in_close = fail_in_close
        self.index = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        self.index += 1
        if self.index - 1 == self.fail_at:
            raise RuntimeError(f"failed at chunk {self.fail_at}")
        if self.index > 2:
            raise StopIteration
        return b"chunk\n"

    def close(self) -> None:
        _count(self.request_id)
        if self.fail_in_close:
            raise OSError("close failed")


class SizedBody(Body):
    def __len__(self) -> int:
        return 2


class CountedFile(io.BytesIO):
    def __init__(self, request_id: str) -> None:
        super().__init__(b"file chunk\n" * 3)
        self.request_id = request_id

    def close(self) -> None:
        if not self.closed:
            _count(self.request_id)
        super().close()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
    request_id = query.get("id", "")
    headers = [("Content-Type", "text/plain")]
    if path == "/closes":
        expect = int(query.get("expect", "0"))
        with _counted:
            _counted.wait_for(lambda: sum(_closes.values()) >= expect, 10)
            body = json.dumps(dict(_closes)).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/flush":
        start_response("200 OK" if bridge.flush(10) else "503 Service Unavailable", headers)
        return [b"flushed\n"]
    start_response("200 OK", headers)
    if path == "/list":
        return [b"chunk\n", b"chunk\n"]
    if path == "/generator":
        return Body(request_id)
    if path == "/sized":
        return SizedBody(request_id)
    if path == "/file":
        wrapper: Callable[..., Iterable[bytes]] = environ["wsgi.file_wrapper"]
        return wrapper(CountedFile(request_id), 4)
    if path == "/fails":
        return Body(request_id, fail_at=1)
    if path == "/close-fails":
        return Body(request_id, fail_in_close=True)
    return [b"unknown\n"]


application = bridge.BridgeMiddleware(app)


def main(argv: Optional[list[str]] = None) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    port = int((argv or sys.argv[1:])[0])
    with make_server("127.0.0.1", port, application, handler_class=Quiet) as server:
        print(f"wsgiref serving on 127.0.0.1:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
