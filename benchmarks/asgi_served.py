"""End to end for ASGI: uvicorn (one process, ``--lifespan on``) serving one stack, driven by wrk.

The method of ``benchmarks.gunicorn_wrk``: ``wrk -t1 -c1 --latency`` (one kept-alive connection), then
SIGTERM; at the lifespan shutdown ``benchmarks.asgi_serve`` flushes and shuts the SDKs down and writes
what it served, so delivered counts are complete and expected counts exact (the readiness probe included).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.gunicorn_wrk import _free_port, _wait_ready, parse_wrk

__all__ = ["measure"]

ROOT = Path(__file__).resolve().parent.parent


def measure(
    config: str, scenario: str, seconds: float, wrk: str, otlp: str, dsn: str, env: dict[str, str]
) -> dict[str, Any]:
    """Serve ``config`` under uvicorn, drive it with wrk for ``seconds``, stop it; wrk's and the server's figures."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-uvicorn-") as tmp:
        stats_path = Path(tmp, "stats.json")
        command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--lifespan", "on", "--log-level", "warning", "--no-access-log"]
        command.append("benchmarks.asgi_serve:application")
        child_env = dict(env, BENCH_CONFIG=config, BENCH_SCENARIO=scenario, BENCH_OTLP=otlp, BENCH_DSN=dsn)
        child_env["BENCH_STATS"] = str(stats_path)
        proc = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_ready(port, proc, 30.0)
            run = subprocess.run(
                [wrk, "-t1", "-c1", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
                 f"http://127.0.0.1:{port}/hello"],
                capture_output=True, text=True, timeout=seconds + 30, check=True,
            )  # fmt: skip
            result = parse_wrk(run.stdout)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                _, errors = proc.communicate(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, errors = proc.communicate(timeout=5)
        if not stats_path.exists():
            log = (errors or b"").decode(errors="replace")
            raise RuntimeError(f"uvicorn wrote no stats (exit {proc.returncode}); its log:\n{log[-3000:]}")
        stats = json.loads(stats_path.read_text())
    result.update(stats)
    result["cpu_us"] = stats["cpu_s"] / max(1, stats["served"]) * 1e6
    result["seconds"] = seconds
    return result
