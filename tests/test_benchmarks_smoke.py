"""The benchmark harness keeps working: its smoke mode runs end to end (no performance is asserted here)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_mode_runs_and_counts_what_it_delivers(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    assert elapsed < 60, f"the smoke run took {elapsed:.0f}s"
    assert "| config | scenario | CPU µs/req | wall µs/req |" in done.stdout
    assert "### Targets (ratios from this run)" in done.stdout

    document = json.loads(out.read_text())
    inprocess = document["inprocess"]
    assert set(inprocess) == {"a", "b", "c", "d", "e"}
    for config, by_scenario in inprocess.items():
        assert set(by_scenario) == {"ok", "errors", "unsampled"}, config
        for summary in by_scenario.values():
            assert summary["cpu_us"] > 0 and summary["wall_us"] > 0 and summary["rss_mb"] > 0
            assert summary["sink_problems"] == 0, (config, summary)
    # a exports nothing; b delivers every span at this small load, and none when unsampled.
    assert all(summary["delivered"] == {} for summary in inprocess["a"].values())
    warmup = 20
    for scenario, spans in (("ok", 200 + warmup), ("errors", 200 + warmup), ("unsampled", 0)):
        assert inprocess["b"][scenario]["delivered"] == {"otlp_spans": [spans, spans]}, scenario
    # The Sentry stacks were measured against the sink's Sentry channel.
    for config in ("c", "d"):
        assert set(inprocess[config]["errors"]["delivered"]) >= {"sentry_transactions", "sentry_errors"}
        got_errors, want_errors = inprocess[config]["unsampled"]["delivered"]["sentry_errors"]
        assert want_errors == 22 and 0 < got_errors <= want_errors
    assert "otlp_spans" in inprocess["e"]["ok"]["delivered"]
    assert document["targets"], "the target lines are computed"

    served = document["gunicorn"]
    if served:  # wrk installed
        assert served["b"]["ok"]["rps"] > 0 and served["b"]["ok"]["p99_ms"] > 0
        got, want = served["b"]["ok"]["delivered"]["otlp_spans"]
        assert got == want > 0
    else:
        assert "wrk is missing" in done.stderr
