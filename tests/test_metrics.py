"""The metrics leg end to end: real apps served over loopback HTTP (wsgiref), the real SDK MeterProvider and the
bridge's OTLP/HTTP metric exporter, read back from the OTLP receiver (decoded with opentelemetry-proto) after
``bridge.flush()``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import pytest
from opentelemetry.instrumentation._semconv import HTTP_DURATION_HISTOGRAM_BUCKETS_NEW
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bridge
from tests.examples_driver import get, served
from tests.httpserver import Reply, Request
from tests.peers.otlp import OtlpReceiver, PointView, accept

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"


def flask_app() -> Any:
    from flask import Flask

    from bridge.frameworks.flask import instrument

    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.get("/boom")
    def boom() -> str:
        raise ZeroDivisionError("boom")

    return instrument(app)


def ok_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def points_by_route(receiver: OtlpReceiver) -> dict[str, PointView]:
    assert bridge.flush(5)
    return {point.attributes.get("http.route", ""): point for point in receiver.latest_points(DURATION)}


def test_one_duration_measurement_per_request_with_its_route(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, service_name="metrics-tests")
    with served(flask_app()) as port:
        assert [get(port, path).status for path in ("/users/1", "/users/2", "/boom")] == [200, 200, 500]
    points = points_by_route(otlp_receiver)
    users, boom = points["/users/{user_id}"], points["/boom"]
    assert (users.count, boom.count) == (2, 1)
    assert users.unit == "s" and users.kind == "histogram" and users.temporality == "CUMULATIVE"
    assert users.bounds == tuple(float(bound) for bound in HTTP_DURATION_HISTOGRAM_BUCKETS_NEW)
    assert users.attributes == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "http.route": "/users/{user_id}",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
    }
    # The failure the framework turned into a 500: its type, as on the span
    assert boom.attributes["error.type"] == "ZeroDivisionError"
    assert boom.attributes["http.response.status_code"] == 500
    assert users.exemplars >= 1  # sampled requests leave exemplars pointing at their traces
    assert (users.scope, users.resource["service.name"]) == ("opentelemetry.instrumentation.wsgi", "metrics-tests")
    assert sum(point.count or 0 for point in points.values()) == 3  # nothing else was measured
    stats = bridge.stats().metrics
    assert stats is not None and stats.failed == 0 and stats.exported == len(otlp_receiver.metric_batches) >= 1
    [active] = otlp_receiver.latest_points(ACTIVE)
    assert (active.value, active.monotonic, active.attributes) == (
        0.0,
        False,
        {"http.request.method": "GET", "url.scheme": "http"},
    )


def test_active_requests_go_up_while_a_response_streams_and_down_when_it_ends(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    streaming, release = threading.Event(), threading.Event()

    def stream(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"first "
        streaming.set()
        release.wait(10)
        yield b"last"

    app = bridge.BridgeMiddleware(stream, view_name=lambda environ: "/stream")
    with served(app) as port:
        reply: list[bytes] = []
        client = threading.Thread(target=lambda: reply.append(get(port, "/stream").body))
        client.start()
        assert streaming.wait(10)
        assert bridge.flush(5)
        [during] = otlp_receiver.latest_points(ACTIVE)
        assert during.value == 1.0
        assert otlp_receiver.latest_points(DURATION) == []  # not over yet: no duration
        release.set()
        client.join(10)
    assert reply == [b"first last"]
    assert bridge.flush(5)
    [after] = otlp_receiver.latest_points(ACTIVE)
    [duration] = otlp_receiver.latest_points(DURATION)
    assert (after.value, duration.count, duration.attributes["http.route"]) == (0.0, 1, "/stream")


@pytest.mark.parametrize("status", [404, 415])
def test_a_collector_without_a_metrics_pipeline_costs_one_warning(
    otlp_receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    def no_metrics(request: Request) -> Reply:
        return Reply(status, {"Content-Type": "text/plain"}) if request.path == "/v1/metrics" else accept(request)

    otlp_receiver.responder = no_metrics
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    app = bridge.BridgeMiddleware(ok_app)
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        with served(app) as port:
            for _ in range(3):
                assert get(port, "/").status == 200
                bridge.flush(5)  # one metrics export per interval: here, per flush
        bridge.flush(5)  # the server has closed every response: every span has ended
    answered = [answer for _, _, answer in otlp_receiver.metric_batches]
    assert answered == [status] * 4
    stats = bridge.stats().metrics
    assert stats is not None and (stats.exported, stats.failed, stats.lost) == (0, 4, 4)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "bridge.metrics"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert (
        "no metrics pipeline" in warnings[0].getMessage() and "OTEL_METRICS_EXPORTER=none" in warnings[0].getMessage()
    )
    assert len(otlp_receiver.spans(accepted_only=True)) == 3  # traces are not affected


def test_the_real_collector_answer_to_an_unknown_path_is_404_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    with OtlpReceiver(metrics=False) as receiver:
        bridge.init(otlp_endpoint=receiver.endpoint)
        app = bridge.BridgeMiddleware(ok_app)
        with caplog.at_level(logging.WARNING, logger="bridge"):
            with served(app) as port:
                get(port, "/")
            for _ in range(2):
                bridge.flush(5)
        assert [answer for _, _, answer in receiver.metric_batches] == [404, 404]
        receiver.assert_all_valid()
        assert len(receiver.spans()) == 1
    assert sum(r.name == "bridge.metrics" for r in caplog.records) == 1


def test_delta_temporality_and_gzip_reach_the_collector(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=acme")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    app = bridge.BridgeMiddleware(ok_app)
    with served(app) as port:
        get(port, "/")
    assert bridge.flush(5)
    [duration] = otlp_receiver.latest_points(DURATION)
    [active] = otlp_receiver.latest_points(ACTIVE)
    assert (duration.temporality, active.temporality) == ("DELTA", "CUMULATIVE")  # up-down counters stay cumulative
    request = otlp_receiver.metric_batches[-1][0]
    assert (request.headers["content-encoding"], request.headers["x-tenant"]) == ("gzip", "acme")


def test_metrics_exporter_none_sends_no_metrics(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, metrics_exporters="none")
    app = bridge.BridgeMiddleware(ok_app)
    with served(app) as port:
        get(port, "/")
    assert bridge.flush(5)
    assert otlp_receiver.metric_batches == [] and len(otlp_receiver.spans()) == 1


def test_tracer_and_meter_providers_given_to_the_middleware_get_its_spans_and_metrics(
    otlp_receiver: OtlpReceiver,
) -> None:
    """OpenTelemetryMiddleware's arguments, in its order: spans to tracer_provider, metrics to meter_provider."""
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    hooked: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = bridge.BridgeMiddleware(
        app,
        lambda span, environ: hooked.append("request"),
        lambda span, environ, status, headers: hooked.append(status),
        tracer_provider,
        meter_provider,
    )
    with served(middleware) as port:
        assert get(port, "/given").status == 200
    assert hooked == ["request", "200 OK"]
    [span] = spans.get_finished_spans()
    assert span.name == "GET /given"
    data = reader.get_metrics_data()
    assert data is not None
    [scope] = data.resource_metrics[0].scope_metrics
    histogram = next(metric for metric in scope.metrics if metric.name == DURATION)
    [point] = histogram.data.data_points
    assert isinstance(point, HistogramDataPoint) and point.count == 1
    assert bridge.flush(5)
    assert otlp_receiver.spans() == []  # nothing went to the bridge's own legs
    assert all(point.name != DURATION for point in otlp_receiver.points())


@pytest.mark.parametrize(
    ("opt_in", "names"),
    [
        ("default", {"http.server.duration", ACTIVE}),
        ("http/dup", {"http.server.duration", DURATION, ACTIVE}),
        ("http", {DURATION, ACTIVE}),
    ],
)
def test_the_old_conventions_when_asked_as_opentelemetry_reads_the_variable(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, opt_in: str, names: set[str]
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    bridge.init(otlp_endpoint=otlp_receiver.endpoint)
    with served(bridge.BridgeMiddleware(ok_app)) as port:
        get(port, "/old")
    assert bridge.flush(5)
    assert {point.name for point in otlp_receiver.points()} == names
    [span] = otlp_receiver.spans()
    assert ("http.method" in span.attributes, "http.request.method" in span.attributes) == (
        opt_in != "http",
        opt_in != "default",
    )
    if "http.server.duration" in names:
        [old] = otlp_receiver.latest_points("http.server.duration")
        assert old.unit == "ms" and old.count == 1
        assert old.attributes["http.method"] == "GET" and old.attributes["http.status_code"] == 200


GLOBAL_SETUP = """
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bridge

spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)  # OpenTelemetry's own setup, as opentelemetry-distro or a test base does
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]


body = bridge.BridgeMiddleware(app)({"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.url_scheme": "http",
                                     "SERVER_NAME": "h", "SERVER_PORT": "80"}, lambda status, headers: None)
list(body)
body.close()
data = reader.get_metrics_data()
names = sorted(m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
print([s.name for s in spans.get_finished_spans()], names, bridge.setup.active())
"""


def test_without_init_beside_opentelemetrys_own_setup_the_global_providers_are_used() -> None:
    """As OpenTelemetryMiddleware: no bridge.init(), a global SDK TracerProvider set by other code."""
    import subprocess
    import sys
    from pathlib import Path

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", GLOBAL_SETUP], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['GET /x'] ['http.server.active_requests', 'http.server.request.duration'] None"


def test_the_console_exporter_prints_the_metrics(capfd: pytest.CaptureFixture[str]) -> None:
    bridge.init(exporters="none", metrics_exporters="console")
    with served(bridge.BridgeMiddleware(ok_app, view_name=lambda environ: "/printed/{id}")) as port:
        get(port, "/printed/1")
    assert bridge.flush(5)
    printed = capfd.readouterr().out
    assert '"name": "http.server.request.duration"' in printed and '"http.route": "/printed/{id}"' in printed
