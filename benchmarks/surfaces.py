"""The new surfaces side by side with their peers, for ``python -m benchmarks.run --surfaces ...``.

Each surface reuses its own harness (no second copy of any of them) and reports, per stack, one cost figure
(CPU µs per unit of work, exporter threads and the final flush included where the harness exports), the
peak RSS of the process that ran it (each stack in a fresh process) and, where something is exported to the
counting sink, what was delivered against what was expected:

- ``metrics``: ``benchmarks.metrics_cost`` one stack per process: ``BridgeMiddleware`` with an SDK
  ``MeterProvider`` against ``OpenTelemetryMiddleware`` with one (both off too, for scale); the serving
  thread's CPU per request, best of the rounds.
- ``logging``: ``benchmarks.logging_cost``: a logging-heavy loop (INFO and DEBUG records); the process's CPU
  per INFO record, the final flush included; the bridge (breadcrumbs) against sentry-sdk's logging
  integration, and the bridge with ``OTEL_LOGS_EXPORTER=otlp`` against OpenTelemetry's ``LoggingHandler`` +
  ``BatchLogRecordProcessor`` + OTLP/HTTP, and against both SDKs stacked; log records to the sink.
- ``asgi``: ``benchmarks.asgi_run.measure_inprocess`` (scenario ``ok``): the bridge's ASGI middleware
  against OpenTelemetry's (without its per-message spans), sentry-sdk's and both stacked.
- ``celery``: ``benchmarks.celery_tasks.measure``: per task (``task.apply()``, every 10th failing), the
  bridge against opentelemetry-instrumentation-celery and sentry-sdk's Celery integration.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from benchmarks.sink import SinkProcess

__all__ = ["SURFACES", "measure", "markdown", "pairs"]

SURFACES = ("metrics", "logging", "asgi", "celery")
Log = Callable[[str], None]


def _row(label: str, cost: float, rss_mb: float, delivered: Optional[dict[str, list[int]]] = None) -> dict[str, Any]:
    return {"label": label, "cost": cost, "rss_mb": rss_mb, "delivered": delivered or {}}


def _metrics(smoke: bool, env: dict[str, str], log: Log) -> dict[str, Any]:
    from benchmarks import metrics_cost

    requests, repeat = (500, 1) if smoke else (20_000, 3)
    rows: dict[str, Any] = {}
    for label, (key, _build) in metrics_cost.STACKS.items():
        figures = metrics_cost.run_stack(key, requests, repeat, env)
        rows[key] = _row(label, figures["cpu_us"], figures["rss_mb"])
        log(f"[surface metrics] {key}: {figures['cpu_us']:.1f} µs CPU/req, {figures['rss_mb']:.1f} MB")
    return {
        "title": "HTTP server metrics on (WSGI)",
        "unit": "serving thread's CPU µs per request",
        "work": f"{requests} requests, best of {repeat}",
        "rows": rows,
        "pairs": [["bridge_metrics", "otel_metrics"], ["bridge", "otel"]],
    }


_LOG_LABELS = {
    "plain": "logging alone",
    "bridge": "bridge (breadcrumbs)",
    "sentry_sdk": "sentry-sdk LoggingIntegration",
    "otel_logs": "OpenTelemetry LoggingHandler + OTLP",
    "sentry_otel": "sentry-sdk + OpenTelemetry OTLP logs",
    "bridge_otlp": "bridge, OTEL_LOGS_EXPORTER=otlp",
}


def _logging(smoke: bool, env: dict[str, str], sink: SinkProcess, log: Log) -> dict[str, Any]:
    from benchmarks import logging_cost

    records, repeat = (500, 1) if smoke else (20_000, 3)
    rows: dict[str, Any] = {}
    for stack in logging_cost.STACKS:
        sink.reset()
        figures = logging_cost.run_stack(stack, records, repeat, sink.dsn, sink.logs_endpoint, env)
        delivered = {}
        if stack in ("otel_logs", "sentry_otel", "bridge_otlp"):  # every INFO and DEBUG record is exported
            delivered["otlp_logs"] = [int(sink.counts()["otlp_logs"]), 2 * records * repeat]
        rows[stack] = _row(_LOG_LABELS[stack], figures["cpu_us"], figures["rss_mb"], delivered)
        log(f"[surface logging] {stack}: {figures['cpu_us']:.1f} µs CPU/INFO record, {figures['rss_mb']:.1f} MB")
    return {
        "title": "A logging-heavy app",
        "unit": "process CPU µs per INFO record (export and flush included)",
        "work": f"{records} INFO + {records} DEBUG records x {repeat}",
        "rows": rows,
        "pairs": [["bridge", "sentry_sdk"], ["bridge_otlp", "otel_logs"], ["bridge_otlp", "sentry_otel"]],
    }


def _asgi(smoke: bool, env: dict[str, str], sink: SinkProcess, log: Log) -> dict[str, Any]:
    from benchmarks import asgi_run

    requests, repeat = (200, 1) if smoke else (5000, 3)
    configs = ["a", "b", "c", "d", "e"]
    table = asgi_run.measure_inprocess(configs, ["ok"], requests, repeat, sink, env)
    rows = {
        config: _row(asgi_run.LABELS[config], table[config]["ok"]["cpu_us"], table[config]["ok"]["rss_mb"],
                     table[config]["ok"]["delivered"])  # fmt: skip
        for config in configs
    }
    return {
        "title": "ASGI (in process, ok)",
        "unit": "process CPU µs per request (exports and flush included)",
        "work": f"{requests} requests x {repeat} rounds, median",
        "rows": rows,
        "pairs": [["e", "b"], ["e", "c"], ["e", "d"]],
    }


def _celery(smoke: bool, env: dict[str, str], sink: SinkProcess, log: Log) -> dict[str, Any]:
    from benchmarks import celery_tasks

    tasks, repeat = (200, 1) if smoke else (3000, 3)  # 3 rounds: one swung 286 -> 372 µs/task on 2 shared cores
    results = celery_tasks.measure(celery_tasks.CONFIGS, tasks, sink, env, repeat)
    runs = (tasks + 20) * repeat  # the harness's warm-up tasks are delivered too; counts are summed over rounds
    wanted = {
        "plain": {},
        "otel": {"otlp_spans": runs},
        "sentry": {"sentry_transactions": runs, "sentry_errors": runs // 10},
        "bridge": {"otlp_spans": runs, "sentry_transactions": runs, "sentry_errors": runs // 10},
    }
    labels = {"plain": "Celery alone", "otel": "opentelemetry-instrumentation-celery",
              "sentry": "sentry-sdk CeleryIntegration", "bridge": "bridge"}  # fmt: skip
    rows = {}
    for config, result in results.items():
        delivered = {channel: [int(result["counts"][channel]), want] for channel, want in wanted[config].items()}
        rows[config] = _row(labels[config], result["cpu_us"], result["rss_mb"], delivered)
        log(f"[surface celery] {config}: {result['cpu_us']:.0f} µs CPU/task, {result['rss_mb']:.1f} MB")
    return {
        "title": "Celery, per task",
        "unit": "process CPU µs per task (exports and flush included)",
        "work": f"{tasks} tasks after 20 warm-up, every 10th failing, {repeat} interleaved round(s), median",
        "rows": rows,
        "pairs": [["bridge", "otel"], ["bridge", "sentry"]],
    }


def measure(surfaces: list[str], env: dict[str, str], smoke: bool, log: Log) -> dict[str, Any]:
    """surface -> {title, unit, work, rows: {key: {label, cost, rss_mb, delivered}}, pairs: [[bridge, peer]]}."""
    out: dict[str, Any] = {}
    with SinkProcess() as sink:
        for surface in surfaces:
            if surface == "metrics":
                out[surface] = _metrics(smoke, env, log)
            elif surface == "logging":
                out[surface] = _logging(smoke, env, sink, log)
            elif surface == "asgi":
                out[surface] = _asgi(smoke, env, sink, log)
            elif surface == "celery":
                out[surface] = _celery(smoke, env, sink, log)
            else:
                raise ValueError(f"unknown surface {surface!r}; known: {', '.join(SURFACES)}")
    for result in out.values():
        result["ratios"] = pairs(result)
    return out


def pairs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each [bridge, peer] pair: CPU ratio (bridge ÷ peer) and peak RSS difference (bridge − peer, MB)."""
    rows = result["rows"]
    found = []
    for mine, peer in result["pairs"]:
        if mine in rows and peer in rows and rows[peer]["cost"]:
            found.append({
                "bridge": mine, "peer": peer,
                "cpu_ratio": rows[mine]["cost"] / rows[peer]["cost"],
                "rss_delta_mb": rows[mine]["rss_mb"] - rows[peer]["rss_mb"],
            })  # fmt: skip
    return found


def _delivered(delivered: dict[str, list[int]]) -> str:
    if not delivered:
        return "—"
    return ", ".join(
        f"{channel} {got}/{want}" if got == want else f"**{channel} {got}/{want}**"
        for channel, (got, want) in delivered.items()
    )


def markdown(surfaces: dict[str, Any]) -> str:
    lines: list[str] = []
    for result in surfaces.values():
        rows = result["rows"]
        lines += [
            "",
            f"#### {result['title']} ({result['work']})",
            "",
            f"| stack | {result['unit']} | peak RSS MB | delivered/expected |",
            "|---|---:|---:|---|",
        ]
        lines += [
            f"| {row['label']} | {row['cost']:.1f} | {row['rss_mb']:.1f} | {_delivered(row['delivered'])} |"
            for row in rows.values()
        ]
        lines.append("")
        for ratio in result["ratios"]:
            lines.append(
                f"- {rows[ratio['bridge']]['label']} ÷ {rows[ratio['peer']]['label']}: CPU "
                f"{ratio['cpu_ratio']:.2f} ×, peak RSS {ratio['rss_delta_mb']:+.1f} MB"
            )
    return "\n".join(lines)
