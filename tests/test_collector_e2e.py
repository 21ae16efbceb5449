"""The scale-out path, end to end, with the real OpenTelemetry Collector (``scripts/otelcol.sh``).

The bridge in this process → agent → tier 1 (load-balancing exporter, static resolver) → two tier-2 tail
samplers → two ``otel-sentry-bridge serve`` replicas → a real Bugsink, and a trace backend per sampler
(the test OTLP receiver). Every collector runs a file of collector-config/ as written, with loopback ports
and test timings given by ``--set`` and environment variables (``tests/collector_support.py``); each
``serve`` demands a bearer token and a client certificate (mutual TLS), as it should beyond loopback. Nothing
waits by sleeping: readiness comes from the health_check extension and /health, progress from the
collectors' own counters and the receivers.
"""

from __future__ import annotations

import math
import ssl
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests.collector_support import CONFIG_DIR, GRPC, HTTP, Pipeline, Serve, pipeline
from tests.peers.bugsink import Bugsink
from tests.peers.otelcol import Collector, wait_until
from tests.peers.otlp import SpanView

SPANS_PER_TRACE = 3  # the server span and two children (below)
DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled"


def _app(instance: bridge.Bridge) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """/<kind>/<n>: ok answers 200, fail answers 500, raise raises; each request makes two child spans."""
        kind, number = environ["PATH_INFO"].strip("/").split("/")
        for step in ("load", "render"):
            with instance.tracer.start_as_current_span(step):
                pass
        if kind == "raise":
            raise RuntimeError(f"boom {number}")
        status = "500 Internal Server Error" if kind == "fail" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"done"]

    return app


def _drive(instance: bridge.Bridge, requests: list[str]) -> None:
    from werkzeug.test import Client

    client = Client(bridge.BridgeMiddleware(_app(instance)))
    for path in requests:
        if path.startswith("/raise/"):
            with pytest.raises(RuntimeError):
                client.get(path, buffered=True)
        else:
            client.get(path, buffered=True)
    assert instance.flush(10)


def _start_bridge(service: str, url: str, dsn: str = "") -> bridge.Bridge:
    options: dict[str, Any] = {"service_name": service, "otlp_endpoint": url, "bsp_schedule_delay_ms": 100}
    # Small export batches: a trace's spans travel in different OTLP requests, as they do under load.
    options["bsp_max_export_batch_size"] = 5
    if dsn:
        options.update(dsn=dsn, exporters=("otlp", "sentry"))
    else:
        options["exporters"] = ("otlp",)
    return bridge.init(**options)


def _by_trace(spans: list[SpanView]) -> dict[str, list[SpanView]]:
    traces: dict[str, list[SpanView]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def _path_of(trace: list[SpanView]) -> str:
    [server] = [span for span in trace if span.kind == "SERVER"]
    return str(server.attributes.get("url.path") or server.attributes.get("http.target"))


def kept_ok_count(kept: dict[str, list[SpanView]], ok: list[str]) -> int:
    return len({_path_of(trace) for trace in kept.values()} & set(ok))


def _wait_decided(line: Pipeline, traces: int) -> None:
    wait_until(lambda: line.total(DECIDED) >= traces, 60, lambda: f"{line.total(DECIDED)} of {traces} decided")


def _wait_backends(line: Pipeline, kept: int) -> dict[str, list[SpanView]]:
    def received() -> int:
        return sum(len(backend.spans()) for backend in line.backends)

    wait_until(lambda: received() >= kept, 30, lambda: f"{received()} of {kept} kept spans at the backends")
    return {trace_id: spans for backend in line.backends for trace_id, spans in _by_trace(backend.spans()).items()}


def _errors_in(bugsink: Bugsink, project_id: int) -> Counter[str]:
    values: Counter[str] = Counter()
    for event in bugsink.stored_events(project_id):
        for value in event["data"].get("exception", {}).get("values", []):
            values[value.get("value", "")] += 1
    return values


def _security_of(serve: Serve) -> dict[str, Any]:
    """serve's token report from /health, after one export without a token (which it must refuse)."""
    request = urllib.request.Request(
        serve.traces_url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5, context=serve.tls())
    assert refused.value.code == 401
    # Without a client certificate the TLS handshake itself is refused: no HTTP answer at all
    no_certificate = ssl.create_default_context(cafile=str(serve.pki.ca))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        with urllib.request.urlopen(request, timeout=5, context=no_certificate) as answer:
            answer.read()
    security: dict[str, Any] = serve.health()["security"]
    return security


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def bugsink_project(bugsink: Bugsink, request: pytest.FixtureRequest) -> tuple[str, int]:
    return bugsink.new_project(f"collector-{request.node.name}"[:60])


@pytest.fixture(autouse=True)
def _no_bridge_after() -> Iterator[None]:
    yield
    bridge.shutdown(timeout=2)


def test_two_tiers_keep_whole_traces_errors_and_a_baseline(
    otelcol: Path, workdir: Path, bugsink: Bugsink, bugsink_project: tuple[str, int]
) -> None:
    dsn, project_id = bugsink_project
    baseline = 30
    ok = [f"/ok/{n}" for n in range(120)]
    failed = [f"/fail/{n}" for n in range(10)]
    raised = [f"/raise/{n}" for n in range(10)]
    direct_raised = [f"/raise/direct-{n}" for n in range(5)]
    with pipeline(otelcol, workdir, dsn, baseline_percent=baseline) as line:
        # A service that reports to Sentry itself (bridge with a DSN: sentry_direct=true on its resource)...
        _drive(_start_bridge("shop-direct", line.agent_traces_url, dsn), direct_raised)
        # ...and one that relies on the collector path for Sentry.
        _drive(
            _start_bridge("shop", line.agent_traces_url),
            [path for group in zip(ok[:10], failed, raised) for path in group] + ok[10:],
        )
        bridge.shutdown(timeout=5)
        sent = len(ok) + len(failed) + len(raised) + len(direct_raised)
        _wait_decided(line, sent)
        sampled = line.total(DECIDED, sampled="true")
        kept = _wait_backends(line, int(sampled) * SPANS_PER_TRACE)
        expected_errors = {f"boom {n}" for n in range(10)} | {f"boom direct-{n}" for n in range(5)}
        bugsink.wait_for_events(len(expected_errors), project_id=project_id, timeout=60)
        per_sampler = [set(_by_trace(backend.spans())) for backend in line.backends]
        security = [_security_of(serve) for serve in line.serves]
    in_bugsink = _errors_in(bugsink, project_id)  # after every collector and serve drained and stopped

    print(
        f"two tiers: {sent} traces sent, {int(sampled)} kept "
        f"({len(per_sampler[0])}/{len(per_sampler[1])} per sampler), "
        f"{kept_ok_count(kept, ok)} of {len(ok)} ok traces at {baseline}%, {sum(in_bugsink.values())} errors in Bugsink"
    )
    # Each trace reached one sampler, and whole: tier 1 routed every span of a trace to the same replica.
    assert not per_sampler[0] & per_sampler[1]
    assert per_sampler[0] and per_sampler[1], "the load balancer used one replica only"
    for trace in kept.values():
        assert len(trace) == SPANS_PER_TRACE, [span.name for span in trace]
    # Every failed trace was kept, whatever its id; the rest were sampled at the configured baseline.
    paths = {_path_of(trace) for trace in kept.values()}
    assert set(failed) | set(raised) | set(direct_raised) <= paths
    assert len(kept) == sampled
    kept_ok = len(paths & set(ok))
    spread = 5 * math.sqrt(len(ok) * baseline / 100 * (1 - baseline / 100))  # five standard deviations
    assert abs(kept_ok - len(ok) * baseline / 100) < spread, f"{kept_ok} of {len(ok)} kept at {baseline}%"
    # The samplers reached serve over TLS with its token: each replica, which answers 401 to a request without
    # the token (the probe of _security_of), refused nothing else.
    assert [(report["tokens"], report["refused"]) for report in security] == [(1, {"unauthorized": 1})] * 2, security
    # Each error reached Bugsink once: via serve for "shop", directly for "shop-direct" (whose spans the
    # samplers' filter kept away from serve), none twice.
    assert {value: count for value, count in in_bugsink.items() if value.startswith("boom")} == {
        value: 1 for value in expected_errors
    }


def test_a_killed_serve_replica_loses_only_its_share_and_the_loss_is_counted(
    otelcol: Path, workdir: Path, bugsink: Bugsink, bugsink_project: tuple[str, int]
) -> None:
    dsn, project_id = bugsink_project
    before = [f"/raise/before-{n}" for n in range(12)]
    after = [f"/raise/after-{n}" for n in range(24)]
    with pipeline(otelcol, workdir, dsn, baseline_percent=0) as line:
        instance = _start_bridge("shop", line.agent_traces_url)
        _drive(instance, before)
        bugsink.wait_for_events(len(before), project_id=project_id, timeout=60)
        line.serves[1].kill()
        _drive(instance, after)
        bridge.shutdown(timeout=5)
        _wait_decided(line, len(before) + len(after))
        kept = _wait_backends(line, (len(before) + len(after)) * SPANS_PER_TRACE)
        lost_traces = {
            _path_of(trace) for trace in _by_trace(line.backends[1].spans()).values() if "after" in _path_of(trace)
        }
        failed = "otelcol_exporter_send_failed_spans"
        sampler_b = line.samplers[1]
        wait_until(
            lambda: sampler_b.metric(failed, exporter="otlphttp/bridge") >= len(lost_traces) * SPANS_PER_TRACE,
            30,
            lambda: f"{sampler_b.metric(failed, exporter='otlphttp/bridge')} spans counted lost; {line.logs()}",
        )
        expected = set(before) | (set(after) - lost_traces)
        bugsink.wait_for_events(len(expected), project_id=project_id, timeout=60)
        counted_lost = sampler_b.metric(failed, exporter="otlphttp/bridge")
        sampler_a_lost = line.samplers[0].metric(failed, exporter="otlphttp/bridge")
    in_bugsink = _errors_in(bugsink, project_id)  # after every collector and serve drained and stopped
    assert set(in_bugsink.values()) == {1}, f"an error reached Bugsink twice: {in_bugsink}"
    delivered = {f"/raise/{value.removeprefix('boom ')}" for value in in_bugsink}

    print(
        f"killed replica: {len(before) + len(after)} error traces sent, {len(after)} after the kill; "
        f"{len(lost_traces)} routed to the dead replica and lost to Sentry ({int(counted_lost)} spans counted by "
        f"otelcol_exporter_send_failed_spans); {len(delivered)} reached Bugsink"
    )
    # The pipeline went on: the trace backend has every trace; replica A's share reached Bugsink.
    assert {_path_of(trace) for trace in kept.values()} == set(before) | set(after)
    assert lost_traces and lost_traces != set(after), "both replicas must have had a share after the kill"
    # What went to the dead replica after the kill is lost to Sentry, and exactly that is counted.
    assert delivered == expected
    assert counted_lost == len(lost_traces) * SPANS_PER_TRACE
    assert sampler_a_lost == 0


def test_memory_limiter_refusal_makes_the_sdk_retry_and_count_its_loss(otelcol: Path, workdir: Path) -> None:
    # A soft limit of 1 MiB: any collector is above it, so the agent refuses everything it is sent.
    agent = Collector(
        otelcol,
        [CONFIG_DIR / "agent.yaml"],
        workdir,
        name="agent-under-pressure",
        listen=[GRPC, HTTP],
        sets={"processors::memory_limiter::limit_mib": "2", "processors::memory_limiter::spike_limit_mib": "1"},
    )
    with agent:
        refused = "otelcol_receiver_refused_spans"
        wait_until(
            lambda: "Memory usage is above" in agent.log_path.read_text(),  # the limiter's check refuses from now on
            30,
            lambda: agent.log_tail(),
        )
        url = f"http://127.0.0.1:{agent.port(HTTP)}/v1/traces"
        instance = bridge.init(service_name="shop", otlp_endpoint=url, exporters=("otlp",), otlp_timeout=4)
        _drive_one(instance)
        stats = instance.stats()
        counted = agent.metric(refused, receiver="otlp")
    assert stats.otlp is not None
    print(
        f"memory limiter: {SPANS_PER_TRACE} spans sent, refused {int(counted)} times, {stats.otlp.failed} counted lost"
    )
    # Every span was offered more than once (the SDK's exporter retried the refusals) and then counted lost.
    assert stats.otlp.exported == 0
    assert stats.otlp.failed == SPANS_PER_TRACE
    assert counted >= 2 * SPANS_PER_TRACE, f"the collector refused {counted} spans: no retry"


def _drive_one(instance: bridge.Bridge) -> None:
    from werkzeug.test import Client

    client = Client(bridge.BridgeMiddleware(_app(instance)))
    assert client.get("/ok/1", buffered=True).status_code == 200
    instance.flush(15)


def test_the_pipeline_benchmark_runs(otelcol: Path) -> None:
    """benchmarks/collector_pipeline.py keeps working (a small run; no figure is judged here)."""
    import subprocess
    import sys

    from tests.peers.otelcol import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.collector_pipeline", "--traces", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| serve (2) |" in done.stdout and "| samplers (2) |" in done.stdout, done.stdout
    import re

    summary = re.search(r"(\d+) failing, baseline\s+\d+%: (\d+) traces kept .*; at the sink (\d+)", done.stdout)
    assert summary, done.stdout
    failing, kept, transactions = map(int, summary.groups())
    assert failing == 4 and kept >= failing and transactions == kept  # each kept trace became a transaction


def test_a_collector_with_a_wrong_token_is_refused_and_counts_its_loss(otelcol: Path, workdir: Path) -> None:
    """A single-node collector given the wrong BRIDGE_SERVE_TOKEN: serve answers 401 to every export (and
    counts each refusal in /health), nothing reaches Sentry, and the collector counts the spans it lost."""
    from tests.httpserver import unused_port
    from tests.peers.sentry import SentryReceiver
    from tests.tls_support import make_pki

    pki = make_pki(workdir / "pki")
    with SentryReceiver() as sentry:
        serve = Serve(sentry.dsn, workdir, "serve-wrong-token", pki)
        try:
            serve.start()
            collector = Collector(
                otelcol,
                [CONFIG_DIR / "single-node.yaml"],
                workdir,
                name="single-node-wrong-token",
                listen=[HTTP],
                sets={
                    "processors::tail_sampling::decision_wait": "1s",
                    "exporters::otlphttp/bridge::retry_on_failure::enabled": "false",
                },
                env={
                    "BRIDGE_SERVE_TRACES_ENDPOINT": serve.traces_url,
                    "BRIDGE_SERVE_LOGS_ENDPOINT": serve.traces_url.replace("/v1/traces", "/v1/logs"),
                    "BRIDGE_SERVE_TOKEN": "not-the-token",
                    "BRIDGE_SERVE_CA_FILE": str(pki.ca),
                    "BRIDGE_SERVE_CLIENT_CERT_FILE": str(pki.client_cert),
                    "BRIDGE_SERVE_CLIENT_KEY_FILE": str(pki.client_key),
                    "BACKEND_ENDPOINT": f"127.0.0.1:{unused_port()}",  # the trace backend: not this test's
                },
            )
            with collector:
                url = f"http://127.0.0.1:{collector.port(HTTP)}/v1/traces"
                _drive(_start_bridge("shop", url), ["/raise/1"])
                failed = "otelcol_exporter_send_failed_spans"
                wait_until(
                    lambda: collector.metric(failed, exporter="otlphttp/bridge") >= SPANS_PER_TRACE,
                    30,
                    lambda: f"{collector.metric(failed, exporter='otlphttp/bridge')} spans counted lost; "
                    f"{collector.log_tail()}",
                )
                security = serve.health()["security"]
        finally:
            serve.stop()
        assert security["refused"].get("unauthorized", 0) >= 1, security
        assert sentry.events() == [] and sentry.transactions() == []
