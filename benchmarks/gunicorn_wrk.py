"""End to end: gunicorn (one worker, ``--no-control-socket``) serving one stack, driven by wrk at saturation.

The worker is ``sync`` (one request at a time; it closes the connection after each response) or
``gthread`` with 4 threads (kept-alive connections, requests in parallel threads: the exporters compete
with four request threads for the GIL). wrk runs ``-t1 -c16 --latency`` (issue 18: 16 connections for
10 s), so the worker never waits for a request: with a sync worker the other connections wait in the
listen backlog, and p99 measures that queue as much as the stack. After wrk, gunicorn gets SIGTERM; the
worker's ``worker_exit`` hook flushes and shuts the SDKs down (bounded) and writes what it served, so
delivered counts are complete and expected counts exact (the readiness probe included).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["find_wrk", "parse_wrk", "measure", "WORKERS", "CONNECTIONS"]

WORKERS = ("sync", "gthread")
CONNECTIONS = 16
_THREADS = 4  # of the gthread worker

ROOT = Path(__file__).resolve().parent.parent
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def find_wrk(install: bool, log: Any = print) -> Optional[str]:
    """The path of ``wrk``; when missing and ``install``, try ``apt-get install -y wrk`` (root only)."""
    path = shutil.which("wrk")
    if path or not install:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("wrk is not installed and cannot be installed here (needs root and apt-get): `apt-get install wrk`")
        return None
    log("wrk is not installed: apt-get install -y wrk ...")
    install_wrk = ["apt-get", "install", "-y", "-q", "wrk"]
    for command in (install_wrk, ["apt-get", "update", "-q"], install_wrk):
        try:
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            break
        path = shutil.which("wrk")
        if path:
            return path
    log("wrk could not be installed (apt-get failed)")
    return None


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), request count and errors from ``wrk --latency`` output."""
    result: dict[str, Any] = {"non_2xx": 0, "socket_errors": 0}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    result["rps"] = float(rps.group(1))
    for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M):
        result[f"p{percent}_ms"] = _ms(value)
    count = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if count:
        result["requests"] = int(count.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        result["non_2xx"] = int(non_2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if errors:
        result["socket_errors"] = sum(int(n) for n in errors.groups())
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until one request got an answer (any answer: the worker is up and the stack built)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} before serving")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not answer within {timeout}s")


def measure(
    config: str,
    scenario: str,
    seconds: float,
    wrk: str,
    otlp: str,
    dsn: str,
    env: dict[str, str],
    worker: str = "sync",
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """Serve ``config`` under gunicorn (``worker``: sync or gthread), drive it with wrk for ``seconds`` over
    ``connections``, stop it; wrk's and the worker's figures."""
    if worker not in WORKERS:
        raise ValueError(f"unknown gunicorn worker {worker!r} (one of {', '.join(WORKERS)})")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-gunicorn-") as tmp:
        stats_path, log_path = Path(tmp, "stats.json"), Path(tmp, "gunicorn.log")
        command = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", worker, "--no-control-socket",
            "--timeout", "60", "--graceful-timeout", "30", "--log-level", "warning",
            "--error-logfile", str(log_path), "-c", "python:benchmarks.gunicorn_conf",
        ]
        if worker == "gthread":
            command += ["--threads", str(_THREADS)]
        if os.path.isdir("/dev/shm"):
            command += ["--worker-tmp-dir", "/dev/shm"]  # the worker's heartbeat file off the disk
        command.append("benchmarks.serve:application")
        child_env = dict(env, BENCH_CONFIG=config, BENCH_SCENARIO=scenario, BENCH_OTLP=otlp, BENCH_DSN=dsn)
        child_env["BENCH_STATS"] = str(stats_path)
        proc = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, proc, 30.0)
            run = subprocess.run(
                [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                 f"http://127.0.0.1:{port}/hello"],
                capture_output=True, text=True, timeout=seconds + 30, check=True,
            )
            result = parse_wrk(run.stdout)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if not stats_path.exists():
            raise RuntimeError(f"the gunicorn worker wrote no stats (exit {proc.returncode}); its log:\n{log[-3000:]}")
        stats = json.loads(stats_path.read_text())
    result.update(stats)
    result["cpu_us"] = stats["cpu_s"] / max(1, stats["served"]) * 1e6
    result.update(seconds=seconds, worker=worker, connections=connections)
    return result
