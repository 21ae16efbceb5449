"""Options from arguments, OTEL_* and SENTRY_* variables: each ecosystem's parsing rules, clear errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from werkzeug.test import Client

import bridge
from bridge.config import DEFAULT_OTLP_ENDPOINT, Options
from bridge.setup import build_sampler
from tests.peers.otlp import OtlpReceiver

DSN = "http://public@127.0.0.1:9/3"


def resolve(env: dict[str, str] | None = None, **arguments: Any) -> Options:
    return Options.resolve(arguments, env or {})


@pytest.mark.parametrize(
    ("env", "arguments", "setting", "value_shown", "problem"),
    [
        ({"SENTRY_DSN": "https://sentry.io/42"}, {}, "SENTRY_DSN", "https://sentry.io/42", "no public key"),
        ({"SENTRY_DSN": "https://k@sentry.io/x"}, {}, "SENTRY_DSN", "https://k@sentry.io/x", "not a number"),
        ({}, {"dsn": "mailto://k@h/1"}, "dsn", "mailto://k@h/1", "unknown scheme"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "2"}, {}, "SENTRY_TRACES_SAMPLE_RATE", "'2'", "between 0 and 1"),
        ({}, {"traces_sample_rate": 2}, "traces_sample_rate", "2", "between 0 and 1"),
        ({"SENTRY_SAMPLE_RATE": "lots"}, {}, "SENTRY_SAMPLE_RATE", "'lots'", "number between 0 and 1"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"},
            {},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "collector:4318",
            "http:// or https://",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}, {}, "OTEL_EXPORTER_OTLP_ENDPOINT", "not a url", "URL"),
        ({}, {"otlp_endpoint": "ftp://x/v1/traces"}, "otlp_endpoint", "ftp://x/v1/traces", "http:// or https://"),
        ({"OTEL_TRACES_EXPORTER": "otlp,zipkin"}, {}, "OTEL_TRACES_EXPORTER", "otlp,zipkin", "unknown exporter"),
        ({"OTEL_TRACES_EXPORTER": "sentry"}, {}, "OTEL_TRACES_EXPORTER", "sentry", "needs SENTRY_DSN"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, {}, "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, {}, "OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "gzip"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, {}, "OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "seconds"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key"}, {}, "OTEL_EXPORTER_OTLP_HEADERS", "<hidden>", "key=value"),
        ({"SENTRY_SEND_DEFAULT_PII": "maybe"}, {}, "SENTRY_SEND_DEFAULT_PII", "maybe", "boolean"),
        ({}, {"before_send": "drop"}, "before_send", "drop", "callable"),
        ({}, {"sample_rat": 1.0}, "sample_rat", "1.0", "unknown option"),
        ({}, {"sampler": "sometimes"}, "sampler", "sometimes", "unknown sampler"),
    ],
)
def test_config_errors_name_the_setting_and_the_value(
    env: dict[str, str], arguments: dict[str, Any], setting: str, value_shown: str, problem: str
) -> None:
    with pytest.raises(bridge.ConfigError) as info:
        resolve(env, **arguments)
    message = str(info.value)
    assert message.startswith(f"{setting}=")
    assert value_shown in message
    assert problem in message
    assert info.value.setting == setting


def test_unknown_propagator_is_a_config_error() -> None:
    with pytest.raises(bridge.ConfigError, match=r"OTEL_PROPAGATORS=.*no propagator named 'b4'"):
        import os

        os.environ["OTEL_PROPAGATORS"] = "tracecontext,b4"
        bridge.init(exporters=["none"])


def test_headers_never_echo_secrets() -> None:
    with pytest.raises(bridge.ConfigError) as info:
        resolve({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer SECRET,broken"})
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEFAULT_OTLP_ENDPOINT),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example/otlp/"}, "https://c.example/otlp/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2"},
            "http://t:1/x",
        ),
    ],
)
def test_otlp_endpoint_resolution(env: dict[str, str], expected: str) -> None:
    assert resolve(env).otlp_endpoint == expected


def test_argument_endpoint_wins_and_sources_are_remembered() -> None:
    options = resolve(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:2", "OTEL_SERVICE_NAME": "svc"},
        otlp_endpoint="http://arg:3/v1/traces",
    )
    assert options.otlp_endpoint == "http://arg:3/v1/traces"
    assert options.sources["otlp_endpoint"] == "argument"
    assert options.sources["service_name"] == "environment (OTEL_SERVICE_NAME)"
    assert options.sources["sample_rate"] == "default"


@pytest.mark.parametrize(
    ("env", "sampler", "arg", "warning"),
    [
        ({}, "parentbased_always_on", None, None),
        ({"SENTRY_TRACES_SAMPLE_RATE": "0.25"}, "parentbased_traceidratio", 0.25, None),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}, "traceidratio", 0.5, None),
        (
            {"OTEL_TRACES_SAMPLER": "always_off", "SENTRY_TRACES_SAMPLE_RATE": "1.0"},
            "always_off",
            None,
            "OpenTelemetry sampler governs",
        ),
        ({"OTEL_TRACES_SAMPLER": "coinflip"}, "parentbased_always_on", None, "not a known sampler"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "7"}, "traceidratio", 1.0, "not a ratio"),
    ],
)
def test_sampler_rules(
    env: dict[str, str], sampler: str, arg: float | None, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    options = resolve(env)
    assert (options.sampler, options.sampler_arg) == (sampler, arg)
    build_sampler(options)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warning is None:
        assert warnings == []
    else:
        assert any(warning in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("env", "field", "expected", "warning"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "many"}, "bsp_max_queue_size", 2048, "not a positive integer"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "250"}, "bsp_schedule_delay_ms", 250, None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=payments,broken"}, "resource_attributes", {}, "malformed entry"),
        (
            {"OTEL_RESOURCE_ATTRIBUTES": "team=pay%20ments,tier=1"},
            "resource_attributes",
            {"team": "pay ments", "tier": "1"},
            None,
        ),
        ({"OTEL_SDK_DISABLED": "yes"}, "disabled", False, "not 'true' or 'false'"),
        ({"OTEL_SDK_DISABLED": "TRUE"}, "disabled", True, None),
        ({"SENTRY_SEND_DEFAULT_PII": "on"}, "send_default_pii", True, None),
        ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5"}, "otlp_timeout", 2.5, None),
        ({"OTEL_PYTHON_EXCLUDED_URLS": "a, b"}, "excluded_urls", ("a", "b"), None),
    ],
)
def test_values_and_warn_and_fall_back(
    env: dict[str, str], field: str, expected: Any, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert getattr(resolve(env), field) == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (warning is None and warnings == []) or any(warning in w for w in warnings if warning), warnings


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, ("otlp",)),
        ({"SENTRY_DSN": DSN}, ("otlp", "sentry")),
        ({"SENTRY_DSN": DSN, "OTEL_TRACES_EXPORTER": "sentry"}, ("sentry",)),
        ({"SENTRY_DSN": DSN, "OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "none"}, ()),
        ({"SENTRY_DSN": DSN, "OTEL_TRACES_EXPORTER": "OTLP, Sentry"}, ("otlp", "sentry")),
    ],
)
def test_exporter_selection(env: dict[str, str], exporters: tuple[str, ...]) -> None:
    assert resolve(env).exporters == exporters


def test_no_dsn_logs_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    resolve({})
    assert [r.getMessage() for r in caplog.records] == ["otel-sentry-bridge: no SENTRY_DSN set; exporting OTLP only"]


def test_environment_reaches_the_exported_resource_and_request(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,service.name=ignored")
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
    monkeypatch.setenv("SENTRY_RELEASE", "checkout@1.2.3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme%20corp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    bridge.init()

    def no_content(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return []

    Client(bridge.BridgeMiddleware(no_content)).get("/", buffered=True)
    assert bridge.flush(5)
    [request] = otlp_receiver.requests
    assert request.headers["x-tenant"] == "acme corp"
    assert request.headers["content-encoding"] == "gzip"
    [span] = otlp_receiver.spans()
    assert span.resource["service.name"] == "checkout"
    assert span.resource["team"] == "payments"
    assert span.resource["deployment.environment.name"] == "staging"
    assert span.resource["service.version"] == "checkout@1.2.3"
