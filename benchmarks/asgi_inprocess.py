"""One ASGI configuration, one scenario, in this (fresh) process (the ASGI twin of ``benchmarks.inprocess``).

``python -m benchmarks.asgi_inprocess --config e --scenario ok --requests 20000 --otlp URL --dsn DSN``
prints one JSON line. The driver is the same minimal one for every configuration, on one asyncio event
loop: a fresh copy of one plain HTTP scope per request (what an ASGI server hands over), a ``receive``
that returns an empty request body, a ``send`` that drops what it gets; the app's own exception (every
10th request in ``errors``/``unsampled``) is caught here, as a server would. The figures mean what they
mean for WSGI (``cpu_us`` includes the final flush and shutdown; ``wall_us`` the request loop only;
``rss_mb`` the peak RSS of the process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Optional

from benchmarks.asgi_apps import CONFIGS, SCENARIOS, AppError, build
from benchmarks.inprocess import timed

__all__ = ["SCOPE", "run"]

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/hello",
    "raw_path": b"/hello",
    "query_string": b"",
    "root_path": "",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
}
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"benchmarks/1.0"), (b"accept", b"*/*")]
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return dict(_REQUEST)


async def _send(message: Any) -> None:
    return None


async def _drive(asgi: Any, count: int) -> int:
    """Serve ``count`` requests; returns how many raised the app's error."""
    failed = 0
    template = SCOPE
    for _ in range(count):
        scope = dict(template)
        scope["headers"] = list(HEADERS)
        try:
            await asgi(scope, _receive, _send)
        except AppError:
            failed += 1
    return failed


def run(config: str, scenario: str, requests: int, otlp: str, dsn: str, warmup: int = 20) -> dict[str, Any]:
    stack = build(config, scenario, otlp, dsn)
    loop = asyncio.new_event_loop()

    def shutdown(timeout: float) -> None:
        loop.close()
        stack.shutdown(timeout)

    try:
        figures = timed(lambda count: loop.run_until_complete(_drive(stack.asgi, count)), shutdown, requests, warmup)
    finally:
        if not loop.is_closed():
            loop.close()
    return {
        "config": config,
        "scenario": scenario,
        "requests": requests,
        "served": stack.app.calls,  # warm-up included: what the sink should receive
        "raised": stack.app.raised,
        **figures,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Measure one ASGI configuration in this process.")
    parser.add_argument("--config", choices=CONFIGS, required=True)
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--otlp", required=True, help="the sink's OTLP endpoint")
    parser.add_argument("--dsn", required=True, help="the sink's DSN")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.config, args.scenario, args.requests, args.otlp, args.dsn, args.warmup)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
