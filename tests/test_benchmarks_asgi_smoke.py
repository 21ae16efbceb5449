"""The ASGI benchmark harness keeps working: its smoke mode runs end to end for the bridge and OpenTelemetry's
ASGI middleware, with and without message spans (no performance is asserted here, only what was delivered)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_asgi_smoke_mode_runs_and_counts_what_it_delivers(tmp_path: Path) -> None:
    out = tmp_path / "asgi.json"
    command = [sys.executable, "-m", "benchmarks.asgi_run", "--smoke", "--configs", "b,e,em"]
    command += ["--scenarios", "ok,unsampled", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| config | scenario | CPU µs/req | wall µs/req |" in done.stdout
    document = json.loads(out.read_text())
    table = document["inprocess"]
    assert set(table) == {"b", "e", "em"}
    for config, by_scenario in table.items():
        for scenario, summary in by_scenario.items():
            assert summary["cpu_us"] > 0 and summary["rss_mb"] > 0, (config, scenario)
            assert summary["sink_problems"] == 0, (config, scenario)
            for channel, (got, want) in summary["delivered"].items():
                assert got == want, (config, scenario, channel)  # 220 requests: nothing may be lost
    requests = 200 + 20  # the warm-up is delivered too
    assert table["e"]["ok"]["delivered"] == {
        "otlp_spans": [requests, requests],
        "sentry_transactions": [requests, requests],
        "sentry_errors": [0, 0],
    }
    assert table["em"]["ok"]["delivered"]["otlp_spans"] == [3 * requests, 3 * requests]  # + two send spans
    assert table["e"]["unsampled"]["delivered"]["otlp_spans"] == [0, 0]
    assert [target["name"] for target in document["targets"]][:1] == ["e CPU/req ≤ 1.5 × b (ok)"]
