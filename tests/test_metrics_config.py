"""The metrics leg's options: OpenTelemetry's metric variables, their fall-backs, and clear errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import bridge
from bridge.config import Options
from bridge.errors import ConfigError
from tests.examples_driver import get, served
from tests.peers.otlp import OtlpReceiver
from tests.test_metrics import ok_app

DSN = "http://public@127.0.0.1:9/3"


def resolve(env: dict[str, str] | None = None, **arguments: Any) -> Options:
    return Options.resolve(arguments, env or {})


def test_defaults_are_opentelemetry_distros() -> None:
    options = resolve()
    assert options.metrics_exporters == ("otlp",)
    assert options.metrics_endpoint == "http://localhost:4318/v1/metrics"
    assert (options.metric_export_interval_ms, options.metric_export_timeout_ms) == (60000, 30000)
    assert (options.metrics_temporality, options.metrics_compression, options.metrics_timeout) == (
        "cumulative",
        "none",
        10.0,
    )
    assert options.sources["metrics_exporters"] == "default"


@pytest.mark.parametrize(
    ("env", "arguments", "endpoint", "source"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"},
            {},
            "http://c:4318/v1/metrics",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (  # the signal's own variable is used as is
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/in"},
            {},
            "http://m:9/in",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ),
        (  # the traces' own variable is for traces only
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"},
            {},
            "http://localhost:4318/v1/metrics",
            "default",
        ),
        ({}, {"otlp_endpoint": "https://c:4318/v1/traces"}, "https://c:4318/v1/metrics", "argument (otlp_endpoint)"),
        ({}, {"metrics_endpoint": "http://m:4318/v1/metrics"}, "http://m:4318/v1/metrics", "argument"),
    ],
)
def test_the_endpoint(env: dict[str, str], arguments: dict[str, Any], endpoint: str, source: str) -> None:
    options = resolve(env, **arguments)
    assert options.metrics_endpoint == endpoint
    assert source in options.sources["metrics_endpoint"]


def test_headers_timeout_and_compression_as_for_traces() -> None:
    generic = resolve(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    assert (generic.metrics_headers, generic.metrics_timeout, generic.metrics_compression) == (
        {"api-key": "1"},
        3,
        "gzip",
    )
    specific = resolve(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=1",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=2",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "7",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "deflate",
        }
    )
    assert (specific.metrics_headers, specific.metrics_timeout, specific.metrics_compression) == (
        {"api-key": "2"},
        10.0,
        "deflate",
    )
    given = resolve(otlp_headers={"Api-Key": "3"}, otlp_timeout=4, otlp_compression="gzip")
    assert (given.metrics_headers, given.metrics_timeout, given.metrics_compression) == ({"Api-Key": "3"}, 4, "gzip")


def test_no_metrics_by_default_when_the_traces_skip_otlp() -> None:
    sentry_only = resolve({"SENTRY_DSN": DSN, "OTEL_TRACES_EXPORTER": "sentry"})
    assert sentry_only.metrics_exporters == () and not sentry_only.metrics_enabled
    asked = resolve({"SENTRY_DSN": DSN, "OTEL_TRACES_EXPORTER": "sentry", "OTEL_METRICS_EXPORTER": "otlp,console"})
    assert asked.metrics_exporters == ("otlp", "console")
    assert resolve({"OTEL_METRICS_EXPORTER": "none"}).metrics_exporters == ()


@pytest.mark.parametrize(
    ("env", "arguments", "setting", "shown"),
    [
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, {}, "OTEL_METRICS_EXPORTER", "prometheus"),
        ({}, {"metrics_exporters": "otlp,statsd"}, "metrics_exporters", "otlp,statsd"),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "weekly"},
            {},
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "weekly",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "collector:4318"},
            {},
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "collector",
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "brotli"}, {}, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "brotli"),
        ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, {}, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ({"OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "-1"}, {}, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1"),
        ({}, {"metric_export_interval_ms": 0}, "metric_export_interval_ms", "0"),
    ],
)
def test_bad_values_name_the_setting_and_the_value(
    env: dict[str, str], arguments: dict[str, Any], setting: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve(env, **arguments)
    assert raised.value.setting == setting
    assert shown in str(raised.value)


def test_a_bad_interval_warns_and_falls_back_as_the_specification_says(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge"):
        options = resolve({"OTEL_METRIC_EXPORT_INTERVAL": "soon"})
    assert options.metric_export_interval_ms == 60000
    assert "OTEL_METRIC_EXPORT_INTERVAL='soon'" in caplog.text


def test_the_interval_drives_exports_without_a_flush(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    with served(bridge.BridgeMiddleware(ok_app)) as port:
        get(port, "/")
    # No flush: the periodic reader exports by itself, every 50 ms.
    [point] = otlp_receiver.wait_for_points("http.server.request.duration", 1, timeout=10)
    assert point.count == 1
