"""The WSGI module gunicorn serves: ``benchmarks.serve:application``, the stack named by the environment.

``BENCH_CONFIG`` (a-e), ``BENCH_SCENARIO``, ``BENCH_OTLP`` and ``BENCH_DSN`` (the sink), ``BENCH_STATS``
(where ``finish()`` writes what this worker served). Imported in the worker, after the fork (no
``--preload``), so every SDK starts its threads in the process that serves. ``benchmarks.gunicorn_conf``
calls ``finish()`` when the worker exits: the SDKs are flushed and shut down (bounded), then the counts,
the worker's CPU since the stack was built, and its peak RSS are written as JSON.
"""
from __future__ import annotations

import json
import os
import resource
import time

from benchmarks.apps import build

__all__ = ["application", "finish"]

_env = os.environ
_stack = build(_env["BENCH_CONFIG"], _env["BENCH_SCENARIO"], _env["BENCH_OTLP"], _env["BENCH_DSN"])
_cpu0 = time.process_time()
application = _stack.wsgi


def finish() -> None:
    _stack.shutdown(20.0)
    stats = {
        "served": _stack.app.calls,
        "raised": _stack.app.raised,
        "cpu_s": time.process_time() - _cpu0,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": _stack.note,
    }
    with open(os.environ["BENCH_STATS"], "w") as file:
        json.dump(stats, file)
