"""The ASGI comparison: ``python -m benchmarks.asgi_run [--smoke] [--requests N] [--repeat R] [--json out.json]``.

The method of ``benchmarks.run`` for ASGI stacks (``benchmarks.asgi_apps``): the counting sink in its own
process; every configuration and scenario in a fresh subprocess (``benchmarks.asgi_inprocess``),
``--repeat`` times in interleaved rounds, the median kept, delivered counts summed over the rounds. The
targets are the in-process ones of the WSGI comparison (e against b and d), plus what OpenTelemetry's
per-message spans cost (bm against b, em against e). Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks import asgi_served
from benchmarks.asgi_apps import CONFIGS, SCENARIOS, channels, spans_per_request
from benchmarks.gunicorn_wrk import find_wrk
from benchmarks.report import Target
from benchmarks.sink import SinkProcess

__all__ = ["LABELS", "main", "measure_inprocess", "summarize", "targets"]

ROOT = Path(__file__).resolve().parent.parent
LABELS = {
    "a": "a bare",
    "b": "b otel asgi (no message spans)",
    "bm": "bm otel asgi (its default: message spans)",
    "c": "c sentry-sdk asgi",
    "d": "d otel+sentry-sdk",
    "e": "e bridge asgi",
    "em": "em bridge asgi, message_spans=True",
}
_MEDIANS = ("cpu_us", "cpu_loop_us", "cpu_sys_us", "wall_us", "rss_mb", "rps", "p50_ms", "p99_ms")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _one(config: str, scenario: str, requests: int, sink: SinkProcess, env: dict[str, str]) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.asgi_inprocess",
        "--config",
        config,
        "--scenario",
        scenario,
        "--requests",
        str(requests),
        "--otlp",
        sink.otlp_endpoint,
        "--dsn",
        sink.dsn,
    ]
    sink.reset()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60 + requests * 0.02)
    if done.returncode != 0:
        raise RuntimeError(f"{config}/{scenario} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["counts"] = sink.counts()
    return result


def measure_inprocess(
    configs: list[str], scenarios: list[str], requests: int, repeat: int, sink: SinkProcess, env: dict[str, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every configuration and scenario in a fresh process, ``repeat`` interleaved rounds: config -> scenario
    -> summary (medians, delivered counts summed). ``benchmarks.run --surfaces asgi`` calls this too."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for number in range(repeat):
        order = configs[number % len(configs) :] + configs[: number % len(configs)]
        for scenario in scenarios:
            for config in order:
                run = _one(config, scenario, requests, sink, env)
                runs.setdefault((config, scenario), []).append(run)
                _log(f"[asgi round {number + 1}/{repeat}] {config} {scenario}: {run['cpu_us']:.0f} µs CPU/req")
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for config in configs:
        for scenario in scenarios:
            table.setdefault(config, {})[scenario] = summarize(runs[(config, scenario)])
    return table


def expected(config: str, scenario: str, served: int, raised: int) -> dict[str, int]:
    """OTLP spans (per request, message spans included; none unsampled), Sentry transactions (one per
    request when sampled), Sentry errors (one per failed request, sampled or not)."""
    sampled = scenario != "unsampled"
    out: dict[str, int] = {}
    if "otlp" in channels(config):
        # A failing request sends nothing: only its request span.
        out["otlp_spans"] = (served - raised) * spans_per_request(config) + raised if sampled else 0
    if "sentry" in channels(config):
        out["sentry_transactions"] = served if sampled else 0
        out["sentry_errors"] = raised
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    summary: dict[str, Any] = {"config": first["config"], "scenario": first["scenario"], "runs": len(runs)}
    for key in _MEDIANS:
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            summary[key] = statistics.median(values)
    delivered: dict[str, list[int]] = {}
    problems = 0
    for run in runs:
        for channel, want in expected(run["config"], run["scenario"], run["served"], run["raised"]).items():
            got_want = delivered.setdefault(channel, [0, 0])
            got_want[0] += int(run["counts"].get(channel, 0))
            got_want[1] += want
        problems += int(run["counts"].get("problems", 0))
    summary["delivered"] = delivered
    summary["sink_problems"] = problems
    return summary


def _ratio(
    name: str, top: Optional[float], bottom: Optional[float], limit: float, stretch: float = 0.0, at_most: bool = True
) -> Target:
    if top is None or not bottom:
        return Target(name, None, limit, None, "not measured in this run")
    value = top / bottom
    hit = (lambda bound: value <= bound) if at_most else (lambda bound: value >= bound)
    detail = f"stretch {stretch:g}: {'met' if hit(stretch) else 'not met'}" if stretch else ""
    return Target(name, value, limit, hit(limit), detail)


def served_targets(served: dict[str, dict[str, dict[str, Any]]]) -> list[Target]:
    """The WSGI comparison's end-to-end targets, for uvicorn + wrk."""

    def get(config: str, key: str) -> Optional[float]:
        value = served.get(config, {}).get("ok", {}).get(key)
        return None if value is None else float(value)

    found = [
        _ratio("uvicorn: e req/s ≥ 0.7 × b", get("e", "rps"), get("b", "rps"), 0.7, 0.85, at_most=False),
        _ratio("uvicorn: e req/s ≥ 3 × d", get("e", "rps"), get("d", "rps"), 3.0, at_most=False),
        _ratio("uvicorn: e p99 ≤ 1.2 × b", get("e", "p99_ms"), get("b", "p99_ms"), 1.2),
    ]
    e = served.get("e", {}).get("ok")
    if e is not None:
        lost = [f"{channel} {got}/{want}" for channel, (got, want) in e["delivered"].items() if got != want]
        found.append(Target("uvicorn: e delivers everything", float(len(lost)), 0, not lost, ", ".join(lost)))
    return found


def targets(table: dict[str, dict[str, dict[str, Any]]]) -> list[Target]:
    def get(config: str, scenario: str, key: str = "cpu_us") -> Optional[float]:
        value = table.get(config, {}).get(scenario, {}).get(key)
        return None if value is None else float(value)

    found = [
        _ratio("e CPU/req ≤ 1.5 × b (ok)", get("e", "ok"), get("b", "ok"), 1.5, stretch=1.25),
        _ratio("e CPU/req ≤ 0.2 × d (ok)", get("e", "ok"), get("d", "ok"), 0.2),
        _ratio("e unsampled CPU/req ≤ 1.3 × b unsampled", get("e", "unsampled"), get("b", "unsampled"), 1.3),
    ]
    e_rss = max((s["rss_mb"] for s in table.get("e", {}).values()), default=None)
    b_rss = max((s["rss_mb"] for s in table.get("b", {}).values()), default=None)
    if e_rss is not None and b_rss is not None:
        found.append(Target("e peak RSS ≤ b + 10 MB", e_rss - b_rss, 10.0, e_rss - b_rss <= 10.0))
    for config in ("bm", "em"):
        base = "b" if config == "bm" else "e"
        cost = get(config, "ok")
        if cost is not None and get(base, "ok"):
            found.append(
                Target(f"{config}: message spans cost (CPU/req {config} ÷ {base}, ok)", cost / get(base, "ok"), 0, None)  # type: ignore[operator]
            )
    return found


def served_markdown(served: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "",
        "### uvicorn + wrk (-t1 -c1), ok",
        "",
        "| config | req/s | p50 ms | p99 ms | server CPU µs/req | delivered/expected |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for config, by_scenario in served.items():
        for summary in by_scenario.values():
            delivered = ", ".join(
                f"{channel} {got}/{want}" if got == want else f"**{channel} {got}/{want}**"
                for channel, (got, want) in summary["delivered"].items()
            )
            lines.append(
                f"| {LABELS[config]} | {summary['rps']:.0f} | {summary['p50_ms']:.2f} | {summary['p99_ms']:.2f} | "
                f"{summary['cpu_us']:.0f} | {delivered or '—'} |"
            )
    return lines


def markdown(table: dict[str, dict[str, dict[str, Any]]], found: list[Target]) -> str:
    lines = [
        "| config | scenario | CPU µs/req | wall µs/req | peak RSS MB | delivered/expected |",
        "|---|---|---:|---:|---:|---|",
    ]
    for config, by_scenario in table.items():
        for scenario, summary in by_scenario.items():
            delivered = ", ".join(
                f"{channel} {got}/{want}" if got == want else f"**{channel} {got}/{want}**"
                for channel, (got, want) in summary["delivered"].items()
            )
            lines.append(
                f"| {LABELS[config]} | {scenario} | {summary['cpu_us']:.0f} | {summary['wall_us']:.0f} | "
                f"{summary['rss_mb']:.1f} | {delivered or '—'} |"
            )
    lines += ["", "### Targets (ratios from this run)", *(target.line() for target in found)]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="200 requests, 1 round: checks the harness")
    parser.add_argument("--requests", type=int, help="requests per run (default 10000; smoke 200)")
    parser.add_argument("--repeat", type=int, help="interleaved rounds, median kept (default 3; smoke 1)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {','.join(CONFIGS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of ok,errors,unsampled")
    parser.add_argument("--json", type=Path, help="write every figure and target here")
    parser.add_argument("--wrk-seconds", type=float, default=10.0, help="seconds of wrk per configuration")
    parser.add_argument("--no-wrk", action="store_true", help="skip uvicorn + wrk (smoke always does)")
    args = parser.parse_args(argv)
    requests = args.requests or (200 if args.smoke else 10000)
    repeat = args.repeat or (1 if args.smoke else 3)
    configs = [c for c in args.configs.split(",") if c]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in configs:
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}")
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    if requests % 10:
        parser.error("--requests must be a multiple of 10 (every 10th request fails in two scenarios)")
    started, load_before = time.monotonic(), os.getloadavg()
    env = _child_env()
    with SinkProcess(sys.executable) as sink:
        table = measure_inprocess(configs, scenarios, requests, repeat, sink, env)
        served: dict[str, dict[str, dict[str, Any]]] = {}
        wrk = None if args.smoke or args.no_wrk else find_wrk(install=False, log=_log)
        if wrk is None and not (args.smoke or args.no_wrk):
            _log("NOTICE: wrk is missing (Debian: `apt-get install wrk`): the uvicorn figures are skipped.")
        for config in configs if wrk is not None else ():
            sink.reset()
            run = asgi_served.measure(config, "ok", args.wrk_seconds, wrk, sink.otlp_endpoint, sink.dsn, env)
            run.update(config=config, scenario="ok", counts=sink.counts())
            served[config] = {"ok": summarize([run])}
            _log(f"[uvicorn] {config}: {run['rps']:.0f} req/s, p99 {run.get('p99_ms', 0):.2f} ms")
    found = targets(table) + served_targets(served)
    load_after = os.getloadavg()
    print(markdown(table, found))
    if served:
        print("\n".join(served_markdown(served)))
    print(
        f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}; {requests} requests x {repeat} rounds in "
        f"process; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{time.monotonic() - started:.0f} s"
    )
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 1):
        print("WARNING: the machine was busy with other work (load average above its CPU count): figures are noisy.")
    if args.json:
        document = {
            "settings": {"requests": requests, "repeat": repeat, "configs": configs, "scenarios": scenarios},
            "labels": LABELS,
            "inprocess": table,
            "uvicorn": served,
            "targets": [target.as_dict() for target in found],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
