"""``benchmarks.run --surfaces`` keeps working: every new surface runs against its peers in one run, lands in
the JSON with a cost and a peak RSS per stack, and what it exports reaches the sink (no figure is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("celery")

ROOT = Path(__file__).resolve().parent.parent


def test_the_surfaces_run_beside_the_main_comparison(tmp_path: Path) -> None:
    out = tmp_path / "surfaces.json"
    command = [sys.executable, "-m", "benchmarks.run", "--smoke", "--no-wrk", "--configs", "a", "--scenarios", "ok",
               "--surfaces", "all", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "### New surfaces against their peers (same run)" in done.stdout
    found = json.loads(out.read_text())["surfaces"]
    assert set(found) == {"metrics", "logging", "asgi", "celery"}
    for name, result in found.items():
        assert all(row["cost"] > 0 and row["rss_mb"] > 0 for row in result["rows"].values()), name
        assert len(result["ratios"]) == len(result["pairs"]) >= 1, name
    logging_rows = found["logging"]["rows"]
    for stack in ("otel_logs", "sentry_otel", "bridge_otlp"):  # every record exported reached the sink
        got, want = logging_rows[stack]["delivered"]["otlp_logs"]
        assert got == want > 0, stack
    bridge_tasks = found["celery"]["rows"]["bridge"]["delivered"]
    assert all(got == want > 0 for got, want in bridge_tasks.values()), bridge_tasks
    assert all(got == want > 0 for got, want in found["asgi"]["rows"]["e"]["delivered"].values() if want)


def test_an_unknown_surface_is_named() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--surfaces", "grpc"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "unknown surface 'grpc'" in done.stderr
