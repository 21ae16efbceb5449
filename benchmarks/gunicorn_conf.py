"""gunicorn settings for the benchmark (``-c python:benchmarks.gunicorn_conf``): deliver, then report."""
from __future__ import annotations

import sys
from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, after its last request: flush and stop the stack's SDKs, write the stats."""
    serve = sys.modules.get("benchmarks.serve")
    if serve is not None:  # the app was loaded (it is not when the import failed)
        serve.finish()
