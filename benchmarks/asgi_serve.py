"""The ASGI module uvicorn serves: ``benchmarks.asgi_serve:application``, the stack named by the environment.

``BENCH_CONFIG`` (see ``benchmarks.asgi_apps``), ``BENCH_SCENARIO``, ``BENCH_OTLP`` and ``BENCH_DSN`` (the
sink), ``BENCH_STATS`` (where ``finish()`` writes what this server served). At the server's lifespan
shutdown (after SIGTERM and the last request) the stack's SDKs are flushed and shut down (bounded), then
the counts, the process's CPU since the stack was built, and its peak RSS are written as JSON, as
``benchmarks.serve`` does for gunicorn.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

from benchmarks.asgi_apps import build

__all__ = ["application", "finish"]

_env = os.environ
_stack = build(_env["BENCH_CONFIG"], _env["BENCH_SCENARIO"], _env["BENCH_OTLP"], _env["BENCH_DSN"])
_cpu0 = time.process_time()


def finish() -> None:
    _stack.shutdown(20.0)
    stats = {
        "served": _stack.app.calls,
        "raised": _stack.app.raised,
        "cpu_s": time.process_time() - _cpu0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    with open(os.environ["BENCH_STATS"], "w") as file:
        json.dump(stats, file)


async def application(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "lifespan":
        await _stack.asgi(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            finish()
            await send({"type": "lifespan.shutdown.complete"})
            return
