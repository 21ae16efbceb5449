"""The benchmark harness keeps working: its smoke mode runs end to end (no performance is asserted here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_mode_runs_and_counts_what_it_delivers(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a bound on a hang, not a speed target: speed belongs to the benchmark itself
    )
    assert done.returncode == 0, done.stderr[-4000:]
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


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8000/hello
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.12us  1.20ms  40.01ms   98.76%
    Req/Sec     3.21k   210.00     3.50k    80.00%
  Latency Distribution
     50%  251.00us
     75%  290.00us
     90%  350.00us
     99%    1.50ms
  32100 requests in 10.00s, 4.20MB read
  Non-2xx or 3xx responses: 3210
Requests/sec:   3209.87
Transfer/sec:    430.00KB
"""


def test_wrk_output_is_parsed_in_milliseconds() -> None:
    from benchmarks.gunicorn_wrk import parse_wrk

    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == 3209.87 and parsed["requests"] == 32100 and parsed["non_2xx"] == 3210
    assert parsed["p50_ms"] == 0.251 and parsed["p99_ms"] == 1.5 and parsed["socket_errors"] == 0


def test_sink_counts_envelope_items_and_client_reports() -> None:
    from benchmarks.sink import Counts

    report = b'{"discarded_events":[{"reason":"queue_overflow","category":"transaction","quantity":3}]}'
    event = b'{"event_id":"ab"}'
    envelope = (
        b'{"event_id":"ab"}\n{"type":"event","length":%d}\n%s\n{"type":"client_report"}\n%s\n'
        % (len(event), event, report)
    )
    counts = Counts()
    counts.envelope(envelope)
    assert counts.sentry_errors == 1 and counts.sentry_transactions == 0
    assert counts.client_reports == {"queue_overflow:transaction": 3}
