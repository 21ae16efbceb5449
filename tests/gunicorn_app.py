"""The app of tests/test_processes.py, served by gunicorn: ``tests.gunicorn_app:application``.

``bridge.init()`` runs at import, from the environment (the OTEL_*/SENTRY_* variables the test sets), so
with ``--preload`` it runs in the master, before the workers are forked. Each response and each event
names the worker that served it (``bridge.set_tag("worker", pid)``).

- ``/pid``: 200, the worker's pid as the body;
- ``/boom``: raises (an error event from this worker);
- ``/hold?URL``: holds its worker until ``URL`` answers (the test's gate), then raises: while one worker
  is held, the other serves everything else.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterable
from typing import Any, Callable

import bridge

bridge.init(shutdown_timeout=float(os.environ.get("TEST_SHUTDOWN_TIMEOUT", "2")))


class WorkerError(Exception):
    pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    pid = str(os.getpid())
    bridge.set_tag("worker", pid)
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise WorkerError(f"boom in worker {pid}")
    if path == "/hold":
        urllib.request.urlopen(environ["QUERY_STRING"], timeout=30).close()
        raise WorkerError(f"held in worker {pid}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [pid.encode()]


application = bridge.BridgeMiddleware(app)
