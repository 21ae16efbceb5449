"""Serve an ASGI app with a real uvicorn on loopback, in a thread of the test process (so the test's own
``bridge.init()`` and receivers apply), as ``tests.examples_driver`` does with wsgiref for WSGI.

``served_asgi(app)`` binds a listening socket first (requests queue in its backlog until uvicorn accepts
them: nothing to wait for), runs ``uvicorn.Server`` on it, and on exit asks it to stop and joins the
thread: uvicorn finishes the requests in progress first, so every span has ended when it returns.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn

import bridge
from tests.examples_driver import REQUESTS, Request, Results, collect, send
from tests.peers.otlp import OtlpReceiver


@contextmanager
def served_asgi(application: Any, **config: Any) -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "auto", "timeout_graceful_shutdown": 10}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(application, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def drive_asgi(application: Any, receiver: OtlpReceiver, requests: Sequence[Request] = REQUESTS) -> Results:
    with served_asgi(application) as port:
        replies = send(port, requests)
    assert bridge.flush(5)
    return collect(replies, receiver)
