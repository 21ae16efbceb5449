"""Serve an ASGI app with a real uvicorn on loopback, in a thread of the test process (so the test's own
``bridge.init()`` and receivers apply), as ``tests.examples_driver`` does with wsgiref for WSGI; or run a
real ASGI server (uvicorn, hypercorn) as a subprocess, configured from the environment (``asgi_server``).

``served_asgi(app)`` binds a listening socket first (requests queue in its backlog until uvicorn accepts
them: nothing to wait for), runs ``uvicorn.Server`` on it, and on exit asks it to stop and joins the
thread: uvicorn finishes the requests in progress first, so every span has ended when it returns.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

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


SERVERS = {
    # server name: (command after ``python -m``, the log line that names the bound port)
    "uvicorn": (["uvicorn", "--host", "127.0.0.1", "--port", "0"], r"Uvicorn running on http://127\.0\.0\.1:(\d+)"),
    "hypercorn": (["hypercorn", "--bind", "127.0.0.1:0"], r"Running on http://127\.0\.0\.1:(\d+)"),
}


@dataclass
class ServerRun:
    port: int = 0
    status: Optional[int] = None
    log: list[str] = field(default_factory=list)


@contextmanager
def asgi_server(target: str, env: Mapping[str, str], server: str = "uvicorn") -> Iterator[ServerRun]:
    """``python -m SERVER TARGET`` from the project's root as a user runs it; on exit SIGTERM (graceful: the
    server finishes, then the bridge's at-exit flush runs) and wait. ``run.status`` is its exit status."""
    root = Path(__file__).resolve().parents[1]
    command, ready = SERVERS[server]
    process = subprocess.Popen(
        [sys.executable, "-m", *command, target],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = ServerRun()
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.log.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not run.port:
            found = re.search(ready, lines.get(timeout=30))
            run.port = int(found.group(1)) if found else 0
        yield run
    finally:
        process.send_signal(signal.SIGTERM)
        run.status = process.wait(30)
        reader.join(5)
