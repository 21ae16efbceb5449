"""collector-config/'s logs pipelines: agent → tier 1 (by trace id) → tier 2 → ``serve``'s /v1/logs, with the
records of services that report to Sentry themselves filtered out: the real collector between the bridge's
real records and a /v1/logs receiver."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import bridge
from tests.collector_support import CONFIG_DIR, GRPC, HTTP
from tests.peers.otelcol import Collector, wait_until
from tests.peers.otlp_logs import OtlpLogsReceiver
from tests.peers.sentry import SentryReceiver
from tests.test_collector_config import OVERLAY, SAMPLERS, _grpc_port, _port, load, routes


def test_agent_forwards_logs_like_traces() -> None:
    agent, tier1 = load("agent.yaml"), load("gateway-tier1-loadbalancer.yaml")
    [(chain, exporter)] = list(routes(agent, "otlp", "logs"))
    assert chain == ["memory_limiter", "resource", "batch"]
    assert _port(agent["exporters"][exporter]["endpoint"]) == _grpc_port(tier1)


def test_tier_1_routes_log_records_by_trace_id() -> None:
    tier1 = load("gateway-tier1-loadbalancer.yaml")
    assert {exporter for _, exporter in routes(tier1, "otlp", "logs")} == {"loadbalancing"}
    assert tier1["exporters"]["loadbalancing"]["routing_key"] == "traceID"


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_send_every_record_to_serve_unsampled_and_filtered(name: str) -> None:
    config = load(name)
    [(chain, exporter)] = list(routes(config, "otlp", "logs"))
    assert exporter == "otlphttp/bridge" and chain[0] == "memory_limiter"
    assert "filter/already-in-sentry" in chain and "tail_sampling" not in chain
    bridge_exporter = config["exporters"]["otlphttp/bridge"]
    logs, traces = urlsplit(bridge_exporter["logs_endpoint"]), urlsplit(bridge_exporter["traces_endpoint"])
    assert (logs.hostname, logs.port, logs.path) == (traces.hostname, traces.port, "/v1/logs")


@pytest.mark.parametrize("name", SAMPLERS)
def test_the_sentry_otlp_overlay_leaves_logs_to_serve(name: str) -> None:
    assert [exporter for _, exporter in routes(load(name, OVERLAY), "otlp", "logs")] == ["otlphttp/bridge"]


def test_the_filter_drops_the_records_of_a_bridge_that_reports_to_sentry_itself(
    otelcol: Path, tmp_path: Path, sentry_receiver: SentryReceiver
) -> None:
    """The real collector (single-node.yaml, the same filter as tier 2) between the bridge and serve's /v1/logs."""
    with OtlpLogsReceiver() as converter:
        collector = Collector(
            otelcol,
            [CONFIG_DIR / "single-node.yaml"],
            tmp_path,
            name="single-node-logs",
            listen=[GRPC, HTTP],
            env={"BRIDGE_SERVE_LOGS_ENDPOINT": converter.endpoint},
        )
        with collector:
            url = f"http://127.0.0.1:{collector.port(HTTP)}/v1/logs"
            # First a service with its own Sentry leg (the bridge marks it sentry_direct), then one without.
            for service, dsn in (("direct", sentry_receiver.dsn), ("plain", None)):
                exporters = "sentry" if dsn else "none"
                bridge.init(
                    service_name=service, dsn=dsn, exporters=exporters, logs_exporters="otlp", logs_endpoint=url
                )
                logging.getLogger("shop").warning("a record from %s", service)
                assert bridge.flush(5)
                bridge.shutdown(1)
            converter.wait_for_records(1, timeout=30)
            filtered = "otelcol_processor_filter_logs_filtered"
            wait_until(lambda: collector.metric(filtered) >= 1, 30, lambda: str(collector.samples()))
            assert collector.metric(filtered) == 1
    services = [record.resource.get("service.name") for record in converter.records]
    assert services == ["plain"], "errors would reach Sentry twice: in process and through serve"
