"""The lifecycle benchmark's harness keeps working (no performance is asserted here): its one-process
request-path mode against this checkout's own HEAD, a few requests per stack."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_lifecycle_paths_mode_runs_every_stack() -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.lifecycle", "--before", "HEAD", "--paths-only",
            "--path-requests", "20", "--path-rounds", "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| list |", "| generator |"))]
    assert len(rows) == 4, done.stdout
    assert sum("(no span ended)" in row for row in rows) == 2  # "before" is not measured without close()
