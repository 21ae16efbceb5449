"""The comparison harness: ``python -m benchmarks.run [--smoke] [--requests N] [--repeat R] [--json out.json]``.

One run, one machine: the counting sink starts in its own process; every configuration (a-e) and
scenario runs in a fresh subprocess (``benchmarks.inprocess``), ``--repeat`` times in interleaved rounds
(the order of the configurations rotates each round) and the median is kept; then each configuration is
served by gunicorn and driven by wrk; then the new surfaces (``--surfaces``: metrics, logging, ASGI,
Celery; ``benchmarks.surfaces``) against their peers. Progress goes to stderr; the tables and target
lines to stdout.
See benchmarks/README.md for what each figure means.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

from benchmarks import charts, gunicorn_wrk, report, surfaces
from benchmarks.apps import CONFIGS, SCENARIOS, channels, sentry_leg_available
from benchmarks.sink import SinkProcess

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
LABELS = {
    "a": "a bare",
    "b": "b otel",
    "c": "c sentry-sdk",
    "d": "d otel+sentry-sdk",
    "e": "e bridge",
}
_PACKAGES = ("opentelemetry-sdk", "opentelemetry-instrumentation-wsgi", "sentry-sdk", "gunicorn")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _child_env() -> dict[str, str]:
    """Our environment without OTEL_*/SENTRY_* settings (they would change what the stacks do)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _rounds(configs: list[str], repeat: int) -> list[list[str]]:
    """Interleaved order: each round starts one configuration later, so drift hits every config alike."""
    return [configs[r % len(configs) :] + configs[: r % len(configs)] for r in range(repeat)]


def _inprocess(
    config: str, scenario: str, args: argparse.Namespace, sink: SinkProcess, env: dict[str, str]
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.inprocess", "--config", config, "--scenario", scenario,
        "--requests", str(args.requests), "--warmup", str(args.warmup), "--otlp", sink.otlp_endpoint, "--dsn", sink.dsn,
    ]
    timeout = 60 + (args.requests + args.warmup) * 0.02  # 20 ms a request: 10 x the slowest stack, a hang
    sink.reset()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{config}/{scenario} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["counts"] = sink.counts()
    result["channels"] = channels(config)
    return result


def _served(
    config: str,
    scenario: str,
    worker: str,
    args: argparse.Namespace,
    wrk: str,
    sink: SinkProcess,
    env: dict[str, str],
) -> dict[str, Any]:
    sink.reset()
    result = gunicorn_wrk.measure(
        config, scenario, args.wrk_seconds, wrk, sink.otlp_endpoint, sink.dsn, env, worker, args.wrk_connections
    )
    result.update(config=config, scenario=scenario, counts=sink.counts(), channels=channels(config))
    return result


def _measure(args: argparse.Namespace, wrk: Optional[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """In-process figures (config -> scenario -> summary) and gunicorn's (worker -> config -> scenario -> summary)."""
    env = _child_env()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    served_runs: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {}
    with SinkProcess(sys.executable) as sink:
        for number, order in enumerate(_rounds(args.configs, args.repeat), 1):
            for scenario in args.scenarios:
                for config in order:
                    started = time.monotonic()
                    run = _inprocess(config, scenario, args, sink, env)
                    runs.setdefault((config, scenario), []).append(run)
                    _log(
                        f"[round {number}/{args.repeat}] {config} {scenario}: {run['cpu_us']:.0f} µs CPU/req, "
                        f"{run['wall_us']:.0f} µs wall/req ({time.monotonic() - started:.1f}s)"
                    )
        if wrk is not None:
            for number, order in enumerate(_rounds(args.configs, args.wrk_repeat), 1):
                for worker in args.workers:
                    for scenario in args.wrk_scenarios:
                        for config in order:
                            run = _served(config, scenario, worker, args, wrk, sink, env)
                            served_runs.setdefault(worker, {}).setdefault((config, scenario), []).append(run)
                            _log(
                                f"[gunicorn {worker} {number}/{args.wrk_repeat}] {config} {scenario}: "
                                f"{run['rps']:.0f} req/s, p99 {run.get('p99_ms', 0):.2f} ms"
                            )

    def table(by_key: dict[tuple[str, str], list[dict[str, Any]]]) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for config in args.configs:
            for scenario in SCENARIOS:
                if (config, scenario) in by_key:
                    out.setdefault(config, {})[scenario] = report.summarize(by_key[(config, scenario)])
        return out

    return table(runs), {worker: table(by_key) for worker, by_key in served_runs.items()}


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="~200 requests, 1 round, 1 s of wrk: checks the harness")
    parser.add_argument("--requests", type=int, help="requests per in-process run (default 5000; smoke 200)")
    parser.add_argument("--warmup", type=int, help="unmeasured (but delivered) requests first (default 500; smoke 20)")
    parser.add_argument("--repeat", type=int, help="interleaved rounds, median kept (default 3; smoke 1)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma list of a,b,c,d,e")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of ok,errors,unsampled")
    parser.add_argument("--wrk-seconds", type=float, help="seconds of wrk per configuration (default 10; smoke 1)")
    parser.add_argument("--wrk-repeat", type=int, default=1, help="gunicorn rounds (default 1)")
    parser.add_argument("--wrk-scenarios", default="ok", help="scenarios served by gunicorn (default ok)")
    parser.add_argument(
        "--workers", default=",".join(gunicorn_wrk.WORKERS), help="gunicorn workers, comma list of sync,gthread"
    )
    parser.add_argument(
        "--wrk-connections", type=int, default=gunicorn_wrk.CONNECTIONS, help="wrk's connections (default 16)"
    )
    parser.add_argument(
        "--surfaces",
        help=f"new surfaces against their peers, comma list of {','.join(surfaces.SURFACES)}, or all/none "
        "(default: all in a full run, none with --smoke)",
    )
    parser.add_argument("--no-wrk", action="store_true", help="skip gunicorn + wrk")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk (smoke never does)")
    parser.add_argument("--json", type=Path, help="write every figure and target here")
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="do not keep this run in benchmarks/results/run.json nor redraw docs/img (a full run does both)",
    )
    args = parser.parse_args(argv)
    args.requests = args.requests or (200 if args.smoke else 5000)  # issue 18: 5 000 x 3 after 500 warm-up
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.warmup = (20 if args.smoke else 500) if args.warmup is None else args.warmup
    args.wrk_seconds = args.wrk_seconds or (1.0 if args.smoke else 10.0)
    args.configs = [c for c in args.configs.split(",") if c]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.wrk_scenarios = [s for s in args.wrk_scenarios.split(",") if s]
    args.workers = [w for w in args.workers.split(",") if w]
    chosen = args.surfaces if args.surfaces is not None else ("none" if args.smoke else "all")
    chosen_list = [s for s in chosen.split(",") if s and s != "none"]
    args.surfaces = list(surfaces.SURFACES) if chosen_list == ["all"] else chosen_list
    for surface in args.surfaces:
        if surface not in surfaces.SURFACES:
            parser.error(f"unknown surface {surface!r} (--surfaces takes {','.join(surfaces.SURFACES)}, all or none)")
    for worker in args.workers:
        if worker not in gunicorn_wrk.WORKERS:
            parser.error(f"unknown gunicorn worker {worker!r}")
    for name in (*args.configs,):
        if name not in CONFIGS:
            parser.error(f"unknown configuration {name!r}")
    for name in (*args.scenarios, *args.wrk_scenarios):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    if args.requests % 10:
        parser.error("--requests must be a multiple of 10 (every 10th request fails in two scenarios)")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    load_before = os.getloadavg()
    leg = sentry_leg_available()
    labels = dict(LABELS)
    if not leg:
        labels["e"] = "e bridge (OTLP only)"
        _log("NOTE: the bridge's Sentry leg is not merged in this checkout: e runs OTLP-only (labelled so).")
    wrk = None
    if not args.no_wrk:
        wrk = gunicorn_wrk.find_wrk(install=not (args.smoke or args.no_install), log=_log)
        if wrk is None:
            _log("NOTICE: wrk is missing (Debian: `apt-get install wrk`): the gunicorn figures are skipped.")
    inprocess, by_worker = _measure(args, wrk)
    surface_results = surfaces.measure(args.surfaces, _child_env(), args.smoke, _log) if args.surfaces else {}
    found = report.targets(inprocess, by_worker, leg) + report.surface_targets(surface_results)
    load_after = os.getloadavg()
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: version(name) for name in _PACKAGES},
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(report.markdown(inprocess, by_worker, found, labels, args.wrk_connections))
    if surface_results:
        print("\n### New surfaces against their peers (same run)")
        print(surfaces.markdown(surface_results))
    wrk_text = (
        f"{args.wrk_seconds:g} s of wrk -c{args.wrk_connections} per config and worker"
        if by_worker
        else "no gunicorn figures (no wrk, or --no-wrk)"
    )
    print(
        f"\n{os.cpu_count()} CPUs, Python {machine['python']}; {args.requests} requests x {args.repeat} rounds "
        f"after {args.warmup} warm-up in "
        f"process, {wrk_text}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{time.monotonic() - started:.0f} s"
    )
    if max(load_before[0], load_after[0]) > (os.cpu_count() or 1):
        print("WARNING: the machine was busy with other work (load average above its CPU count): figures are noisy.")
    if args.json or not (args.smoke or args.no_save):
        document = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": machine,
            "sentry_leg": leg,
            "labels": labels,
            "inprocess": inprocess,
            "gunicorn": by_worker.get("sync", {}),  # the sync worker (the key older readers know)
            "gunicorn_workers": by_worker,
            "targets": [target.as_dict() for target in found],
            "surfaces": surface_results,
        }
        text = json.dumps(document, indent=2) + "\n"
        if args.json:
            args.json.write_text(text)
        if not (args.smoke or args.no_save):
            charts.RESULTS.mkdir(parents=True, exist_ok=True)
            (charts.RESULTS / "run.json").write_text(text)
            for path in charts.render_all():
                _log(f"chart: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
