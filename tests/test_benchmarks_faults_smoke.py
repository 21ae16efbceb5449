"""The fault benchmark keeps working: a tiny run end to end (no performance is asserted here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_fault_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    command = [sys.executable, "-m", "benchmarks.faults", "--requests", "200", "--warmup", "20", "--repeat", "1"]
    command += ["--faults", "hang", "--backends", "sentry,otlp", "--shutdown", "0.5", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| backends | p50 µs | p90 µs | p99 µs | p99 / paired healthy p99 |" in done.stdout
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"both healthy", "sentry: hang", "otlp: hang"}
    for label, figures in summary.items():
        assert 0 < figures["p50_us"] <= figures["p99_us"] <= figures["max_us"], label
        assert figures["shutdown_s"] < 1.5, label  # shutdown(0.5) keeps its deadline, faults or not
