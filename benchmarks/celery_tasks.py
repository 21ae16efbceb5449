"""Per-task overhead of tracing Celery tasks: the bridge against its references.

    python -m benchmarks.celery_tasks [--tasks 5000] [--repeat R] [--json FILE] [--smoke]

Each configuration runs in a fresh process (so no SDK patches another's Celery), against the counting sink
(benchmarks/sink.py: OTLP/HTTP and Sentry envelopes, in its own process):

- ``plain``: Celery alone (the baseline);
- ``otel``: opentelemetry-instrumentation-celery alone, on the OpenTelemetry SDK with a batch processor and
  the OTLP/HTTP exporter to the sink;
- ``sentry``: sentry-sdk with its Celery integration, ``traces_sample_rate=1.0``, to the sink;
- ``bridge``: ``bridge.init()`` (OTLP and Sentry legs) and ``bridge.frameworks.celery.instrument()``.

A task run is ``task.apply()``: Celery's whole task tracer in this process (the ``task_prerun``,
``task_postrun``, ``task_success``/``task_failure`` signals, sentry-sdk's wrapped tracer), without a broker,
so what is measured is the worker-side cost of one task, every 10th one failing. ``cpu_us``: process CPU
time (exporter threads included) from the first measured task until the SDK flushed, per task;
``wall_us``: the loop only, per task. The overhead is each configuration's ``cpu_us`` minus ``plain``'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any, Optional

from benchmarks.sink import SinkProcess

__all__ = ["CONFIGS", "main", "run_child"]

CONFIGS = ("plain", "otel", "sentry", "bridge")
_WARMUP = 20


def _app(config: str, otlp: str, dsn: str) -> tuple[Any, Any]:
    """The Celery app and its one task, instrumented as ``config`` says; returns (task, flush)."""
    flush: Any = lambda: None  # noqa: E731
    if config == "otel":
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp)))
        trace.set_tracer_provider(provider)
        CeleryInstrumentor().instrument()
        flush = lambda: provider.force_flush(30_000)  # noqa: E731
    elif config == "sentry":
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration

        sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, integrations=[CeleryIntegration()], default_integrations=False)
        flush = lambda: sentry_sdk.flush(30)  # noqa: E731
    elif config == "bridge":
        import bridge
        from bridge.frameworks.celery import instrument

        bridge.init(otlp_endpoint=otlp, dsn=dsn, service_name="celery-benchmark")  # library defaults
        instrument()
        flush = lambda: bridge.flush(30)  # noqa: E731
    from celery import Celery

    app = Celery("benchmark")
    app.conf.update(task_ignore_result=True, task_store_eager_result=False)

    @app.task(name="benchmark.work")
    def work(number: int) -> int:
        if number % 10 == 9:
            raise ValueError(f"task {number} failed")
        return number * 2

    return work, flush


def run_child(config: str, tasks: int, otlp: str, dsn: str) -> dict[str, Any]:
    import logging

    logging.disable(logging.CRITICAL)  # Celery logs every failed task: not what is measured
    task, flush = _app(config, otlp, dsn)
    for number in range(_WARMUP):
        task.apply(args=(number,))
    flush()
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(tasks):
        task.apply(args=(number,))
    wall = time.perf_counter() - wall
    flush()
    cpu = time.process_time() - cpu
    from benchmarks.rss import peak_rss_mb

    rss_mb = peak_rss_mb()
    result = {"config": config, "tasks": tasks, "cpu_us": cpu / tasks * 1e6, "wall_us": wall / tasks * 1e6,
              "rss_mb": rss_mb}  # fmt: skip
    if config == "bridge":
        import bridge

        result["bridge_stats"] = _plain(bridge.stats())
    return result


def _plain(value: Any) -> Any:
    """``bridge.stats()`` (dataclasses) as JSON-ready dicts."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def measure(
    configs: tuple[str, ...],
    tasks: int,
    sink: Optional[SinkProcess] = None,
    env: Optional[dict[str, str]] = None,
    repeat: int = 1,
) -> dict[str, dict[str, Any]]:
    """Each configuration in a fresh process against ``sink`` (one of its own when None), ``repeat`` rounds.

    The rounds are interleaved (the order rotates each round, so drift on a shared machine hits every
    configuration alike); ``cpu_us`` and ``wall_us`` are the medians, ``rss_mb`` the highest peak, and
    ``counts`` are summed over the rounds (each round sends ``tasks`` + 20 warm-up tasks), so a loss in any
    round shows. Every round is in ``rounds``.
    """
    if sink is None:
        with SinkProcess(sys.executable) as own:
            return measure(configs, tasks, own, env, repeat)
    rounds: dict[str, list[dict[str, Any]]] = {config: [] for config in configs}
    for number in range(max(1, repeat)):
        shift = number % len(configs)
        for config in configs[shift:] + configs[:shift]:
            rounds[config].append(_run_once(config, tasks, sink, env))
    results: dict[str, dict[str, Any]] = {}
    for config in configs:
        runs = rounds[config]
        result = dict(runs[0])
        result.update(
            cpu_us=statistics.median(run["cpu_us"] for run in runs),
            wall_us=statistics.median(run["wall_us"] for run in runs),
            rss_mb=max(run["rss_mb"] for run in runs),
            counts=_summed([run["counts"] for run in runs]),
            repeat=len(runs),
            rounds=runs,
        )
        results[config] = result
    return results


def _run_once(config: str, tasks: int, sink: SinkProcess, env: Optional[dict[str, str]]) -> dict[str, Any]:
    sink.reset()
    command = [sys.executable, "-m", "benchmarks.celery_tasks", "--child", config, "--tasks", str(tasks),
               "--otlp", sink.otlp_endpoint, "--dsn", sink.dsn]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"celery_tasks {config} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["counts"] = sink.counts()
    return result


def _summed(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """The sink's counts of several rounds added up (numbers, and the client reports' reason:category)."""
    total: dict[str, Any] = {}
    for one in counts:
        for key, value in one.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
                total[key] = value if key not in total or not total[key] else total[key]
            elif isinstance(value, dict):
                merged = total.setdefault(key, {})
                for name, quantity in value.items():
                    merged[name] = merged.get(name, 0) + quantity
            else:
                total[key] = total.get(key, 0) + value
    return total


_CHANNELS = {"plain": (), "otel": ("otlp_spans",), "sentry": ("sentry_transactions", "sentry_errors"),
             "bridge": ("otlp_spans", "sentry_transactions", "sentry_errors")}  # fmt: skip


def report(results: dict[str, dict[str, Any]]) -> str:
    """One row per configuration; delivered/expected per channel it exports (summed over the rounds)."""
    base = results.get("plain", {}).get("cpu_us", 0.0)
    lines = ["| config | CPU µs/task | overhead µs/task | wall µs/task | peak RSS MB | OTLP spans | Sentry tx | "
             "Sentry errors | client reports |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for config, result in results.items():
        counts = result["counts"]
        runs = (result["tasks"] + _WARMUP) * result.get("repeat", 1)
        expected = {"otlp_spans": runs, "sentry_transactions": runs, "sentry_errors": runs // 10}
        cells = [f"{counts[channel]}/{expected[channel]}" if channel in _CHANNELS.get(config, expected) else "—"
                 for channel in ("otlp_spans", "sentry_transactions", "sentry_errors")]  # fmt: skip
        lines.append(
            f"| {config} | {result['cpu_us']:.1f} | {result['cpu_us'] - base:.1f} | {result['wall_us']:.1f} | "
            f"{result['rss_mb']:.1f} | {' | '.join(cells)} | {counts.get('client_reports') or '-'} |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds (median CPU; counts summed)")
    parser.add_argument("--smoke", action="store_true", help="200 tasks: checks the harness, measures nothing")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--otlp", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.tasks, args.otlp, args.dsn)))
        return 0
    results = measure(CONFIGS, 200 if args.smoke else args.tasks, repeat=1 if args.smoke else args.repeat)
    print(report(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
