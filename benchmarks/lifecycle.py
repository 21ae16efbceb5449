"""The request lifecycle's cost: the bridge before and after a change, against OpenTelemetry's middleware alone.

    python -m benchmarks.lifecycle                     # before = main, after = this checkout
    python -m benchmarks.lifecycle --before REF --requests 5000 --repeat 3 --wrk-seconds 5

``bridge/`` as of ``--before`` (``git archive``) goes into a temporary directory that comes first on the
children's ``PYTHONPATH``; "after" is this checkout. Each measurement is a fresh subprocess (as in
``inprocess.py``), exporting to the counting sink in its own process; rounds are interleaved and the
median is kept. Stacks: ``b`` (OpenTelemetry's ``OpenTelemetryMiddleware`` + batch processor + OTLP/HTTP)
and ``e`` (the bridge: OTLP and Sentry), both with library defaults (``benchmarks/apps.py``).

- bodies: ``list`` (the app returns ``[body]``: the bridge's fast path) and ``generator`` (the same chunk,
  yielded);
- drivers: ``server`` (iterate, then ``close()``, as every WSGI server does) and ``client`` (iterate only,
  as test clients do; before the change the bridge ended no span there, so "before" is not measured);
- figures: ``loop_us`` (CPU of the request loop per request, exporter threads included), ``cpu_us`` (the
  same plus the final flush: export paid for), ``wall_us``, and the spans the sink counted (delivered).
- with ``wrk`` installed, gunicorn (1 sync worker, ``gunicorn_wrk.py``) for b, e before and e after:
  requests/s and p99 (list body, server driver: gunicorn always closes).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
BODIES = ("list", "generator")
DRIVERS = ("server", "client")


# -- child: one configuration, one body kind, one driver ------------------------------------------------------
def _generator_app(app: Any) -> None:
    """Make the stack's App yield its chunk from a generator (its class swapped: the stack already wraps it)."""
    base = type(app)

    class GeneratorApp(base):  # type: ignore[misc, valid-type]
        def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            chunks = base.__call__(self, environ, start_response)

            def generate() -> Iterator[bytes]:
                yield from chunks

            return generate()

    app.__class__ = GeneratorApp


def _drive(wsgi: Any, count: int, close: bool) -> None:
    from benchmarks.inprocess import ENVIRON, _start_response

    for _ in range(count):
        environ = dict(ENVIRON)
        environ["wsgi.input"] = io.BytesIO(b"")
        body = wsgi(environ, _start_response)
        for _chunk in body:
            pass
        if close:
            closer = getattr(body, "close", None)
            if closer is not None:
                closer()
        del body  # as a test client drops its response


def _child(config: str, body: str, driver: str, requests: int, otlp: str, dsn: str) -> dict[str, Any]:
    from benchmarks.apps import build

    stack = build(config, "ok", otlp, dsn)
    if body == "generator":
        _generator_app(stack.app)
    close = driver == "server"
    _drive(stack.wsgi, 20, close)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    _drive(stack.wsgi, requests, close)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    stack.shutdown(30.0)
    cpu2 = time.process_time()
    bridge_file = sys.modules["bridge"].__file__ if "bridge" in sys.modules else ""
    return {
        "loop_us": (cpu1 - cpu0) / requests * 1e6,
        "cpu_us": (cpu2 - cpu0) / requests * 1e6,
        "wall_us": (wall1 - wall0) / requests * 1e6,
        "served": stack.app.calls,
        "bridge": bridge_file,
    }


def _paths(before_wsgi: str, requests: int, rounds: int, otlp: str, dsn: str) -> dict[str, Any]:
    """Every stack in this one process, interleaved round by round; the serving thread's own CPU
    (``time.thread_time()``: the exporter threads are not counted), median per request over the rounds."""
    import importlib.util

    from benchmarks.apps import App, _otel

    otel, otel_shutdown = _otel(App(False), otlp, True)  # first: it sets the global TracerProvider
    import bridge

    bridge.init(otlp_endpoint=otlp, dsn=dsn)
    spec = importlib.util.spec_from_file_location("bridge._wsgi_before", before_wsgi)
    assert spec is not None and spec.loader is not None
    before = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before)
    stacks: dict[str, tuple[Any, bool]] = {}
    for body in BODIES:
        apps = {name: App(False) for name in ("b", "before", "after")}
        if body == "generator":
            for app in apps.values():
                _generator_app(app)
        wrapped = {
            "b": otel if body == "list" else _otel_again(apps["b"]),
            "before": before.BridgeMiddleware(apps["before"]),
            "after": bridge.BridgeMiddleware(apps["after"]),
        }
        for name, wsgi in wrapped.items():
            for driver in DRIVERS:
                if name == "before" and driver == "client":
                    continue
                stacks[f"{name}/{body}/{driver}"] = (wsgi, driver == "server")
    samples: dict[str, list[float]] = {key: [] for key in stacks}
    keys = list(stacks)
    for round_number in range(rounds):
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            wsgi, close = stacks[key]
            start = time.thread_time()
            _drive(wsgi, requests, close)
            samples[key].append((time.thread_time() - start) / requests * 1e6)
    otel_shutdown(30.0)
    bridge.shutdown(30.0)
    return {key: statistics.median(values) for key, values in samples.items()}


def _micro(before_wsgi: str, requests: int, rounds: int) -> dict[str, Any]:
    """The bridge alone, before and after, unsampled and exporting nothing (the lifecycle code and little
    else), interleaved; the serving thread's CPU per request: median and fastest round."""
    import importlib.util

    import bridge
    from benchmarks.apps import App

    bridge.init(otlp_endpoint="http://127.0.0.1:9/v1/traces", traces_sample_rate=0.0)  # nothing is exported
    spec = importlib.util.spec_from_file_location("bridge._wsgi_before", before_wsgi)
    assert spec is not None and spec.loader is not None
    before = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before)
    stacks: dict[str, Any] = {}
    for body in BODIES:
        apps = (App(False), App(False))
        if body == "generator":
            for app in apps:
                _generator_app(app)
        stacks[f"before/{body}"] = before.BridgeMiddleware(apps[0])
        stacks[f"after/{body}"] = bridge.BridgeMiddleware(apps[1])
    samples: dict[str, list[float]] = {key: [] for key in stacks}
    keys = list(stacks)
    for round_number in range(rounds):
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.thread_time()
            _drive(stacks[key], requests, True)
            samples[key].append((time.thread_time() - start) / requests * 1e6)
    return {key: {"median": statistics.median(v), "min": min(v)} for key, v in samples.items()}


def _otel_again(app: Any) -> Any:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app)  # the global provider _otel() set


# -- parent ----------------------------------------------------------------------------------------------------
def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _extract(ref: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", ref, "bridge"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    # The checkout's editable install (and the checkout as working directory, which Python and gunicorn put
    # first on sys.path) would find this checkout's ``bridge``: at startup (sitecustomize runs after the .pth
    # files, before the working directory is added) drop the editable finder and import the old ``bridge``.
    (into / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')]\n"
        "import bridge\n"
    )


def _env(first: Optional[Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (first, ROOT) if p is not None)
    return env


def _run(key: tuple[str, str, str, str], env: dict[str, str], requests: int, sink: Any) -> dict[str, Any]:
    config, _code, body, driver = key
    command = [
        sys.executable, "-m", "benchmarks.lifecycle", "--child", config, body, driver,
        "--requests", str(requests), "--otlp", sink.otlp_endpoint, "--dsn", sink.dsn,
    ]
    sink.reset()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60 + requests * 0.02)
    if done.returncode != 0:
        raise RuntimeError(f"{key} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["counts"] = sink.counts()
    return result


def _keys() -> list[tuple[str, str, str, str]]:
    keys = []
    for body in BODIES:
        for driver in DRIVERS:
            keys.append(("b", "-", body, driver))
            if driver == "server":
                keys.append(("e", "before", body, driver))
            keys.append(("e", "after", body, driver))
    return keys


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="main", help="git ref of the 'before' bridge (default: main)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=float, default=5.0, help="0: no gunicorn figures")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--path-requests", type=int, default=2000, help="requests per stack and round (one process)")
    parser.add_argument("--path-rounds", type=int, default=15)
    parser.add_argument("--paths-only", action="store_true", help="only the one-process request path figures")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "BODY", "DRIVER"), help=argparse.SUPPRESS)
    parser.add_argument("--paths", metavar="BEFORE_WSGI_PY", help=argparse.SUPPRESS)
    parser.add_argument(
        "--micro", action="store_true",
        help="only the bridge before vs after, unsampled, exporting nothing, 3000 requests x 21 rounds",
    )
    parser.add_argument("--otlp", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, args.requests, args.otlp, args.dsn)), flush=True)
        return 0
    if args.paths:
        print(json.dumps(_paths(args.paths, args.path_requests, args.path_rounds, args.otlp, args.dsn)), flush=True)
        return 0

    if args.micro:
        with tempfile.TemporaryDirectory(prefix="bench-before-") as before_dir:
            _extract(args.before, Path(before_dir))
            figures = _micro(str(Path(before_dir, "bridge", "wsgi.py")), 3000, 21)
        print(f"Bridge alone, unsampled, no export; serving thread's CPU µs/request; before = {args.before}")
        print("| body | before median | after median | before fastest | after fastest | after - before (fastest) |")
        print("|---|---:|---:|---:|---:|---:|")
        for body in BODIES:
            old_run, new_run = figures[f"before/{body}"], figures[f"after/{body}"]
            print(
                f"| {body} | {old_run['median']:.2f} | {new_run['median']:.2f} | {old_run['min']:.2f} "
                f"| {new_run['min']:.2f} | {new_run['min'] - old_run['min']:+.2f} |"
            )
        return 0

    from benchmarks.gunicorn_wrk import find_wrk, measure
    from benchmarks.sink import SinkProcess

    load_before = os.getloadavg()[0]
    runs: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {key: [] for key in _keys()}
    served: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-before-") as before_dir, SinkProcess(sys.executable) as sink:
        _extract(args.before, Path(before_dir))
        envs = {"before": _env(Path(before_dir)), "after": _env(None), "-": _env(None)}
        keys = [] if args.paths_only else list(runs)
        for round_number in range(0 if args.paths_only else args.repeat):
            shift = round_number % len(keys)
            for key in keys[shift:] + keys[:shift]:
                _log(f"round {round_number + 1}/{args.repeat}: {key}")
                runs[key].append(_run(key, envs[key[1]], args.requests, sink))
        if not args.paths_only:
            assert runs[("e", "before", "list", "server")][0]["bridge"].startswith(before_dir), "not the old bridge"
        _log("request path, one process, interleaved")
        command = [
            sys.executable, "-m", "benchmarks.lifecycle", "--paths", str(Path(before_dir, "bridge", "wsgi.py")),
            "--path-requests", str(args.path_requests), "--path-rounds", str(args.path_rounds),
            "--otlp", sink.otlp_endpoint, "--dsn", sink.dsn,
        ]
        done = subprocess.run(command, cwd=ROOT, env=envs["after"], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"request path measurement failed:\n{done.stderr[-3000:]}")
        paths: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        wrk = find_wrk(install=True, log=_log) if args.wrk_seconds > 0 and not args.paths_only else None
        if wrk:
            stacks = (("b", "b", envs["-"]), ("e before", "e", envs["before"]), ("e after", "e", envs["after"]))
            for name, config, env in stacks:
                _log(f"gunicorn + wrk: {name}")
                sink.reset()
                result = measure(config, "ok", args.wrk_seconds, wrk, sink.otlp_endpoint, sink.dsn, env)
                result["counts"] = sink.counts()
                served[name] = result

    load_after = os.getloadavg()[0]
    busy = " (more than the CPU count: other work on the machine, the figures are noisy)"
    print(
        f"Load average {load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} CPUs"
        + (busy if max(load_before, load_after) > (os.cpu_count() or 1) else "")
    )
    print(
        f"Request path: serving thread's CPU µs/request, one process, {args.path_requests} requests x "
        f"{args.path_rounds} interleaved rounds (median); before = {args.before}"
    )
    print("| body | driver | b OpenTelemetry | e bridge before | e bridge after | after - before |")
    print("|---|---|---|---|---|---|")
    for body in BODIES:
        for driver in DRIVERS:
            b, after = paths[f"b/{body}/{driver}"], paths[f"after/{body}/{driver}"]
            before_us = paths.get(f"before/{body}/{driver}")
            shown = "(no span ended)" if before_us is None else f"{before_us:.1f}"
            delta = "" if before_us is None else f"{after - before_us:+.1f}"
            print(f"| {body} | {driver} | {b:.1f} | {shown} | {after:.1f} | {delta} |")
    if args.paths_only:
        return 0
    print()
    print(f"In process, {args.requests} requests x {args.repeat} rounds (median); before = {args.before}")
    print("| stack | body | driver | loop CPU µs/req | CPU µs/req (with export) | wall µs/req | spans delivered |")
    print("|---|---|---|---|---|---|---|")
    table: dict[str, Any] = {}
    for key, results in runs.items():
        config, code, body, driver = key
        name = "b OpenTelemetry" if config == "b" else f"e bridge {code}"
        row = {field: statistics.median(r[field] for r in results) for field in ("loop_us", "cpu_us", "wall_us")}
        delivered = sum(r["counts"]["otlp_spans"] for r in results)
        expected = sum(r["served"] for r in results)
        table["/".join(key)] = dict(row, delivered=delivered, expected=expected)
        print(
            f"| {name} | {body} | {driver} | {row['loop_us']:.1f} | {row['cpu_us']:.1f} | {row['wall_us']:.1f} "
            f"| {delivered}/{expected} |"
        )
    if served:
        print("\ngunicorn, 1 sync worker, wrk -t1 -c1, list body")
        print("| stack | requests/s | p99 ms | spans delivered |")
        print("|---|---|---|---|")
        for name, result in served.items():
            print(f"| {name} | {result['rps']:.0f} | {result['p99_ms']:.2f} | {result['counts']['otlp_spans']} |")
    else:
        print("\n(no gunicorn figures: wrk is not installed, or --wrk-seconds 0)")
    if args.json:
        Path(args.json).write_text(json.dumps({"paths": paths, "inprocess": table, "gunicorn": served}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
