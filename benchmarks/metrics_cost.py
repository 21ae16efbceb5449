"""What the HTTP server metrics cost per request, in one process: metrics off and on, for the bridge and for
OpenTelemetry's own middleware (each with a real SDK MeterProvider when on), like for like.

    python -m benchmarks.metrics_cost [--requests N] [--repeat R]

Each stack serves N requests of a tiny app through its middleware, called directly (no server, no socket),
its body iterated and closed as a server does; spans go to a processor-less TracerProvider (the export cost
is the other benchmarks' subject); metrics go to an SDK MeterProvider whose reader is never collected
during the run. The serving thread's CPU time per request is printed, best of R rounds.
``--stack KEY`` measures one stack alone in this process and prints JSON (CPU µs/request, peak RSS MB):
``benchmarks.run --surfaces metrics`` runs each stack that way, in its own process.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from typing import Any, Callable

__all__ = ["STACKS", "main", "measure_one", "run_stack"]


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


def _otel(metrics: bool) -> Any:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else NoOpMeterProvider()
    return OpenTelemetryMiddleware(app, tracer_provider=_tracer_provider(TracerProvider), meter_provider=meters)


def _bridged(metrics: bool) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    import bridge

    bridge.init(exporters="none", metrics_exporters="none")
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else None
    return bridge.BridgeMiddleware(app, tracer_provider=_tracer_provider(TracerProvider), meter_provider=meters)


_PROVIDERS: list[Any] = []


def _tracer_provider(factory: Callable[[], Any]) -> Any:
    """One processor-less TracerProvider per process, shared by its stacks."""
    if not _PROVIDERS:
        _PROVIDERS.append(factory())
    return _PROVIDERS[0]


# name -> (key for one stack in its own process, builder); each builder imports only its own stack
STACKS: dict[str, tuple[str, Callable[[], Any]]] = {
    "OpenTelemetryMiddleware, metrics off": ("otel", lambda: _otel(False)),
    "OpenTelemetryMiddleware, metrics on": ("otel_metrics", lambda: _otel(True)),
    "BridgeMiddleware, metrics off": ("bridge", lambda: _bridged(False)),
    "BridgeMiddleware, metrics on": ("bridge_metrics", lambda: _bridged(True)),
}


def measure_one(key: str, requests: int, repeat: int) -> dict[str, float]:
    """One stack (``STACKS``' key) alone in this process: CPU µs per request (best of ``repeat``), peak RSS."""
    from benchmarks.rss import peak_rss_mb

    build = next(builder for k, builder in STACKS.values() if k == key)
    best = min(_run(build(), requests) for _ in range(repeat))
    return {"cpu_us": best, "rss_mb": peak_rss_mb()}


def run_stack(key: str, requests: int, repeat: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """``measure_one`` in a fresh process (so its peak RSS is that stack's alone)."""
    import json
    import subprocess
    import sys

    command = [sys.executable, "-m", "benchmarks.metrics_cost", "--stack", key,
               "--requests", str(requests), "--repeat", str(repeat)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"metrics_cost {key} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


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
    parser.add_argument("--stack", choices=[key for key, _ in STACKS.values()], help="one stack alone; JSON out")
    args = parser.parse_args(argv)
    if args.stack:
        import json

        print(json.dumps(measure_one(args.stack, args.requests, args.repeat)))
        return
    results: dict[str, float] = {}
    for _ in range(args.repeat):  # rounds interleave the stacks, so a noisy moment hits all of them
        for name, (_key, build) in STACKS.items():
            cost = _run(build(), args.requests)
            results[name] = min(results.get(name, cost), cost)
    for name, cost in results.items():
        print(f"{name:<40} {cost:7.1f} µs CPU per request")


if __name__ == "__main__":
    main()
