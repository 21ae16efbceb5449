"""collector-config/'s logs pipelines: agent → tier 1 (by trace id) → tier 2 → ``serve``'s /v1/logs, with the
records of services that report to Sentry themselves filtered out, checked on the bridge's real records."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import bridge
from tests.peers.otlp_logs import OtlpLogsReceiver
from tests.peers.sentry import SentryReceiver
from tests.test_collector_config import OVERLAY, SAMPLERS, _grpc_port, _port, load, ottl_true, routes


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


def _dropped(resource: Resource) -> bool:
    conditions = load("gateway-tier2-sampler.yaml")["processors"]["filter/already-in-sentry"]["logs"]["log_record"]
    return any(ottl_true(condition, LogRecord(), resource) for condition in conditions)


def test_the_filter_drops_the_records_of_a_bridge_that_reports_to_sentry_itself(
    sentry_receiver: SentryReceiver,
) -> None:
    resources = []
    for dsn in (sentry_receiver.dsn, None):
        with OtlpLogsReceiver() as receiver:
            exporters = "sentry" if dsn else "none"
            bridge.init(dsn=dsn, exporters=exporters, logs_exporters="otlp", logs_endpoint=receiver.endpoint)
            logging.getLogger("shop").warning("a record")
            assert bridge.flush(5)
            bridge.shutdown(1)
            body = receiver.requests[0].body
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        resources.append(request.resource_logs[0].resource)
    with_dsn, without = resources
    assert _dropped(with_dsn), "errors would reach Sentry twice: in process and through serve"
    assert not _dropped(without)
