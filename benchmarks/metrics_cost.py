"""What the HTTP server metrics cost per request, in one process: metrics off and on, for the bridge and for
OpenTelemetry's own middleware (each with a real SDK MeterProvider when on), like for like.

    python -m benchmarks.metrics_cost [--requests N] [--repeat R]

Each stack serves N requests of a tiny app through its middleware, called directly (no server, no socket),
its body iterated and closed as a server does; spans go to a processor-less TracerProvider (the export cost
is the other benchmarks' subject); metrics go to an SDK MeterProvider whose reader is never collected
during the run. The serving thread's CPU time per request is printed, best of R rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from typing import Any, Callable

__all__ = ["main"]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def _environ() -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"PATH_INFO": "/users/7"}
    setup_testing_defaults(environ)
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


def _stacks() -> dict[str, Callable[[], Any]]:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import bridge

    tracer_provider = TracerProvider()

    def otel(metrics: bool) -> Any:
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else NoOpMeterProvider()
        return OpenTelemetryMiddleware(app, tracer_provider=tracer_provider, meter_provider=meters)

    def bridged(metrics: bool) -> Any:
        bridge.init(exporters="none", metrics_exporters="none")
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else None
        return bridge.BridgeMiddleware(app, tracer_provider=tracer_provider, meter_provider=meters)

    return {
        "OpenTelemetryMiddleware, metrics off": lambda: otel(False),
        "OpenTelemetryMiddleware, metrics on": lambda: otel(True),
        "BridgeMiddleware, metrics off": lambda: bridged(False),
        "BridgeMiddleware, metrics on": lambda: bridged(True),
    }


def _run(middleware: Any, requests: int) -> float:
    environ = _environ()
    started = time.thread_time()
    for _ in range(requests):
        body = middleware(dict(environ), _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.thread_time() - started) / requests * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, float] = {}
    stacks = _stacks()
    for _ in range(args.repeat):  # rounds interleave the stacks, so a noisy moment hits all of them
        for name, build in stacks.items():
            cost = _run(build(), args.requests)
            results[name] = min(results.get(name, cost), cost)
    for name, cost in results.items():
        print(f"{name:<40} {cost:7.1f} µs CPU per request")


if __name__ == "__main__":
    main()
