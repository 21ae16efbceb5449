"""One configuration, one scenario, in this (fresh) process: drive the wrapped app N times, then deliver.

``python -m benchmarks.inprocess --config e --scenario ok --requests 20000 --otlp URL --dsn DSN`` prints
one JSON line. The driver is the same minimal one for every configuration: a fresh copy of one plain
environ per request (what a WSGI server hands over), a no-op ``start_response``, the body iterated and
closed; the app's own exception (every 10th request in ``errors``/``unsampled``) is caught here, as a
server would.

- ``cpu_us``: ``time.process_time()`` (every thread of the process: the exporter threads included) from
  the first measured request until the SDKs have flushed and shut down, so the export of every request
  is paid for, divided by the number of requests. ``cpu_loop_us`` is the same without the final flush;
  ``cpu_sys_us`` is the kernel's part of ``cpu_us`` (system calls: sockets and loopback TCP mostly).
- ``wall_us``: wall time of the request loop only (what the requests took, contention from the exporter
  threads included), per request.
- ``rss_mb``: peak RSS of the process (``VmHWM``, benchmarks/rss.py), SDK imports and the whole run included.
A few warm-up requests run first (unmeasured, but delivered and expected like the rest).
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from typing import Any, Callable, Optional

from benchmarks.apps import CONFIGS, SCENARIOS, AppError, build
from benchmarks.rss import peak_rss_mb

__all__ = ["run", "ENVIRON"]

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/hello",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "benchmarks/1.0",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def _drive(wsgi: Any, count: int) -> int:
    """Serve ``count`` requests; returns how many raised the app's error."""
    failed = 0
    template = ENVIRON
    for _ in range(count):
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        try:
            body = wsgi(environ, _start_response)
            try:
                for _chunk in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        except AppError:
            failed += 1
    return failed


def timed(
    drive: Callable[[int], Any], shutdown: Callable[[float], Any], requests: int, warmup: int
) -> dict[str, float]:
    """``drive(n)`` serves n requests; the figures of ``requests`` of them after ``warmup``, the final
    ``shutdown`` (every export flushed) paid for in ``cpu_us``. Shared by the WSGI and ASGI harnesses."""
    drive(warmup)
    sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    cpu0, wall0 = time.process_time(), time.perf_counter()
    drive(requests)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    shutdown(30.0)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    sys2 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    return {
        "cpu_us": (cpu2 - cpu0) / requests * 1e6,
        "cpu_loop_us": (cpu1 - cpu0) / requests * 1e6,
        "cpu_sys_us": (sys2 - sys0) / requests * 1e6,  # the kernel's share of cpu_us (sockets, loopback TCP)
        "wall_us": (wall1 - wall0) / requests * 1e6,
        "shutdown_s": wall2 - wall1,
        "rss_mb": peak_rss_mb(),
    }


def run(config: str, scenario: str, requests: int, otlp: str, dsn: str, warmup: int = 20) -> dict[str, Any]:
    stack = build(config, scenario, otlp, dsn)
    figures = timed(lambda count: _drive(stack.wsgi, count), stack.shutdown, requests, warmup)
    return {
        "config": config,
        "scenario": scenario,
        "requests": requests,
        "served": stack.app.calls,  # warm-up included: what the sink should receive
        "raised": stack.app.raised,
        **figures,
        "note": stack.note,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Measure one configuration in this process.")
    parser.add_argument("--config", choices=CONFIGS, required=True)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--otlp", required=True, help="the sink's OTLP endpoint")
    parser.add_argument("--dsn", required=True, help="the sink's DSN")
    args = parser.parse_args(argv)
    result = run(args.config, args.scenario, args.requests, args.otlp, args.dsn, args.warmup)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
