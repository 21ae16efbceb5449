"""Request latency of the bridge while one backend misbehaves: ``python -m benchmarks.faults``.

The claim measured (issue 6): whatever one backend does (refuse, hang, answer after 10 s, rate-limit,
413, 500, garbage), the app's requests are not delayed: p99 within 10 % of the run with both backends
healthy. Each run is configuration e (``bridge.init`` + ``BridgeMiddleware``, library defaults: OTLP
timeout 10 s, Sentry timeout 5 s) in a fresh process, scenario ``errors`` (every 10th request raises),
driven by the same minimal driver as ``benchmarks.inprocess``, each request timed on its own
(``perf_counter_ns``). The healthy backend is the counting sink (``benchmarks.sink``); the faulty one a
``benchmarks.faultserver`` process, or a port nothing listens on ("refused"). Runs go in ``--repeat``
rounds (the order of the faults rotates each round), and each fault run is paired with a healthy run
just before it: the p99 ratio is taken within each pair and the median of the pairs kept, so that other
work on a shared 2-core machine hits both sides of a ratio alike. The other figures are medians of the
runs. Figures are per request, in µs.

    python -m benchmarks.faults                          # all faults, both backends: about 3 minutes
    python -m benchmarks.faults --requests 2000 --repeat 1 --faults hang,refused --backends sentry
    python -m benchmarks.faults --json faults.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.faultserver import MODES
from benchmarks.sink import SinkProcess

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
FAULTS = ("refused", *MODES)
BACKENDS = ("sentry", "otlp")
LIMIT = 1.10  # p99 may be at most 10 % over the healthy run's


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the measured process ----------------------------------------------------------------------------------
def _child(otlp: str, dsn: str, requests: int, warmup: int, shutdown: float) -> dict[str, Any]:
    from benchmarks.apps import AppError, build
    from benchmarks.inprocess import ENVIRON

    stack = build("e", "errors", otlp, dsn)
    wsgi = stack.wsgi
    timings: list[int] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    clock = time.perf_counter_ns
    cpu0 = time.process_time()
    for number in range(warmup + requests):
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO(b"")
        started = clock()
        try:
            body = wsgi(environ, start_response)
            try:
                for _chunk in body:
                    pass
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        except AppError:
            pass
        if number >= warmup:
            timings.append(clock() - started)
    cpu = time.process_time() - cpu0
    shutdown_started = time.monotonic()
    stack.shutdown(shutdown)
    timings.sort()

    def percentile(p: float) -> float:
        return timings[min(len(timings) - 1, int(p * len(timings)))] / 1000

    return {
        "p50_us": percentile(0.50),
        "p90_us": percentile(0.90),
        "p99_us": percentile(0.99),
        "max_us": timings[-1] / 1000,
        "mean_us": sum(timings) / len(timings) / 1000,
        "cpu_us": cpu / (warmup + requests) * 1e6,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "shutdown_s": time.monotonic() - shutdown_started,
    }


# -- the harness ------------------------------------------------------------------------------------------
class _FaultServer:
    """``benchmarks.faultserver MODE`` in a child process (or, for "refused", a port with no listener)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.proc: Optional[subprocess.Popen[bytes]] = None
        if mode == "refused":
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = int(sock.getsockname()[1])
            return
        command = [sys.executable, "-m", "benchmarks.faultserver", mode]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the {mode} fault server did not start")
        self.port = int(json.loads(line)["port"])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def _run(otlp: str, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.faults", "--child", "--otlp", otlp, "--dsn", dsn,
        "--requests", str(args.requests), "--warmup", str(args.warmup), "--shutdown", str(args.shutdown),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    timeout = 120 + args.requests * 0.01  # 10 ms a request: a hang, not a measure
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _modes(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [("healthy", "")] + [(backend, fault) for backend in args.backends for fault in args.faults]


def _label(backend: str, fault: str) -> str:
    return "both healthy" if backend == "healthy" else f"{backend}: {fault}"


def _one(backend: str, fault: str, sink: SinkProcess, args: argparse.Namespace) -> dict[str, Any]:
    server = _FaultServer(fault) if fault else None
    try:
        otlp, dsn = sink.otlp_endpoint, sink.dsn
        if server is not None and backend == "otlp":
            otlp = f"http://127.0.0.1:{server.port}/v1/traces"
        elif server is not None:
            dsn = f"http://publickey@127.0.0.1:{server.port}/1"
        return _run(otlp, dsn, args)
    finally:
        if server is not None:
            server.stop()


def measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each fault run is paired with a healthy run just before it: its p99 ratio is taken against that
    run, so that drift and other work on the machine hit both sides of a ratio alike."""
    runs: dict[str, list[dict[str, Any]]] = {}
    ratios: dict[str, list[float]] = {}
    faults = _modes(args)[1:]
    with SinkProcess(sys.executable) as sink:
        for round_number in range(args.repeat):
            order = faults[round_number % len(faults) :] + faults[: round_number % len(faults)]
            for backend, fault in order:
                started = time.monotonic()
                healthy = _one("healthy", "", sink, args)
                run = _one(backend, fault, sink, args)
                label = _label(backend, fault)
                runs.setdefault("both healthy", []).append(healthy)
                runs.setdefault(label, []).append(run)
                ratios.setdefault(label, []).append(run["p99_us"] / healthy["p99_us"])
                _log(
                    f"[round {round_number + 1}/{args.repeat}] {label}: p99 {run['p99_us']:.0f} µs against "
                    f"{healthy['p99_us']:.0f} µs healthy just before ({time.monotonic() - started:.1f}s)"
                )
    summary: dict[str, dict[str, Any]] = {}
    for label, measured in runs.items():
        summary[label] = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        summary[label]["p99_ratio"] = statistics.median(ratios[label]) if label in ratios else 1.0
    return summary


def report(summary: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    lines = [
        "| backends | p50 µs | p90 µs | p99 µs | p99 / paired healthy p99 | max µs | CPU µs/req | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ok = True
    for label, figures in summary.items():
        ratio = figures["p99_ratio"]
        verdict = "" if label == "both healthy" else (" PASS" if ratio <= LIMIT else " FAIL")
        ok = ok and (label == "both healthy" or ratio <= LIMIT)
        lines.append(
            f"| {label} | {figures['p50_us']:.0f} | {figures['p90_us']:.0f} | {figures['p99_us']:.0f} | "
            f"{ratio:.2f}{verdict} | {figures['max_us']:.0f} | {figures['cpu_us']:.0f} | {figures['rss_mb']:.1f} |"
        )
    return "\n".join(lines), ok


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=10_000, help="measured requests per run (default 10000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds, median kept (default 3)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma list of {','.join(FAULTS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma list of sentry,otlp")
    parser.add_argument("--shutdown", type=float, default=2.0, help="bridge.shutdown() timeout per run (default 2)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--save", action="store_true", help="keep them in results/faults.json; redraw charts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.faults = [f for f in args.faults.split(",") if f]
    args.backends = [b for b in args.backends.split(",") if b]
    for fault in args.faults:
        if fault not in FAULTS:
            parser.error(f"unknown fault {fault!r}")
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    if args.child:
        print(json.dumps(_child(args.otlp, args.dsn, args.requests, args.warmup, args.shutdown)), flush=True)
        return 0
    started = time.monotonic()
    load_before = os.getloadavg()
    summary = measure(args)
    table, ok = report(summary)
    print(table)
    print(
        f"\n{os.cpu_count()} CPUs; {args.requests} requests x {args.repeat} rounds per line (median); "
        f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{time.monotonic() - started:.0f} s. Target: p99 <= {LIMIT:.2f} x healthy: {'PASS' if ok else 'FAIL'}"
    )
    document = {"settings": {"requests": args.requests, "repeat": args.repeat}, "summary": summary, "pass": ok}
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.save:
        from benchmarks import charts

        charts.RESULTS.mkdir(parents=True, exist_ok=True)
        (charts.RESULTS / "faults.json").write_text(json.dumps(document, indent=2) + "\n")
        charts.render_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
