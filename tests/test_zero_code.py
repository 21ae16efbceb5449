"""Zero-code setup with the real ``opentelemetry-instrument``: a plain WSGI app under real gunicorn, no bridge
code in it, exports to both backends; and the ``sentry`` exporter under OpenTelemetry's own configurator."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import pytest

from tests.httpserver import RecordingServer
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.zero_code_support import BIN, Program, program_env, require_installed

APP = '''
import requests  # instrumented by opentelemetry-instrument (opentelemetry-instrumentation-requests)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom from a plain WSGI app")
    if path == "/call":
        requests.get(environ["QUERY_STRING"], headers={"baggage": "tenant=acme"}, timeout=10).close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
'''


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_installed()


def get(port: int, target: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_opentelemetry_instrument_gunicorn_exports_to_both_backends(
    tmp_path: Path, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = program_env(
        OTEL_SERVICE_NAME="zero-code",
        # The gRPC trap, on purpose: "otlp" with no protocol set means gRPC to OpenTelemetry's own
        # configurator. With the bridge's distro it is OTLP/HTTP.
        OTEL_TRACES_EXPORTER="otlp,sentry",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.url,
        SENTRY_DSN=sentry_receiver.dsn,
        SENTRY_ENVIRONMENT="zero",
    )
    argv = [str(BIN / "opentelemetry-instrument"), "gunicorn", "--no-control-socket", "--workers", "1"]
    argv += ["--bind", "127.0.0.1:0", "--chdir", str(tmp_path), "app:app"]
    with RecordingServer() as downstream:
        server = Program(argv, env, r"Listening at: http://127\.0\.0\.1:(\d+)")
        try:
            port = int(server.match.group(1))
            assert get(port, "/hello") == 200
            assert get(port, "/boom") == 500
            assert get(port, f"/call?{downstream.url}/downstream") == 200
        finally:
            output = server.stop()  # SIGTERM: the worker exits and the bridge flushes at exit
        (outgoing,) = downstream.requests
    assert "not configured" not in output and "Failed to auto initialize" not in output, output

    spans = otlp_receiver.spans()
    servers = {span.name: span for span in spans if span.kind == "SERVER"}
    assert set(servers) == {"GET /hello", "GET /boom", "GET /call"}, output
    assert all(span.resource["service.name"] == "zero-code" for span in spans)
    assert [name for name, _ in servers["GET /boom"].events] == ["exception"]
    (client,) = [span for span in spans if span.kind == "CLIENT"]
    call = servers["GET /call"]
    assert (client.trace_id, client.parent_span_id) == (call.trace_id, call.span_id)

    # The outgoing request carried both W3C and Sentry headers, for the same trace and span.
    headers = outgoing.headers
    assert headers["traceparent"].startswith(f"00-{call.trace_id}-{client.span_id}-0")  # flags: sampled (+random)
    assert int(headers["traceparent"][-2:], 16) & 1
    assert headers["sentry-trace"] == f"{call.trace_id}-{client.span_id}-1"
    baggage = headers["baggage"].split(",")
    assert "tenant=acme" in baggage and f"sentry-trace_id={call.trace_id}" in baggage
    assert "sentry-public_key=publickey" in baggage and "sentry-environment=zero" in baggage

    transactions = {event["transaction"]: event for event in sentry_receiver.transactions()}
    assert set(transactions) == {"GET /hello", "GET /boom", "GET /call"}
    assert transactions["GET /call"]["contexts"]["trace"]["trace_id"] == call.trace_id
    assert [span["op"] for span in transactions["GET /call"]["spans"]] == ["http.client"]
    (error,) = sentry_receiver.events()
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    assert error["contexts"]["trace"]["trace_id"] == servers["GET /boom"].trace_id
    assert error["environment"] == "zero"

    # The distro set up the metrics leg too: one duration measurement per request, exported at exit.
    durations = otlp_receiver.latest_points("http.server.request.duration")
    assert sum(point.count or 0 for point in durations) == 3, output
    assert {point.resource["service.name"] for point in durations} == {"zero-code"}
    assert {point.attributes["http.response.status_code"] for point in durations} == {200, 500}
    # ... and its MeterProvider is the global one: the outgoing request's client metrics came along.
    assert any(point.name.startswith("http.client.") for point in otlp_receiver.points()), output


def test_a_configuration_error_never_stops_the_app(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = program_env(SENTRY_DSN="not a dsn")
    argv = [str(BIN / "opentelemetry-instrument"), "gunicorn", "--no-control-socket", "--workers", "1"]
    argv += ["--bind", "127.0.0.1:0", "--chdir", str(tmp_path), "app:app"]
    server = Program(argv, env, r"Listening at: http://127\.0\.0\.1:(\d+)")
    try:
        assert get(int(server.match.group(1)), "/hello") == 200
    finally:
        output = server.stop()
    assert "otel-sentry-bridge: not configured, nothing is traced: SENTRY_DSN='not a dsn'" in output


STOCK = """
from opentelemetry import trace
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

_OTelSDKConfigurator().configure()  # OpenTelemetry's own configurator: exporters by entry-point name
tracer = trace.get_tracer("stock")
attributes = {"http.request.method": "GET", "url.path": "/stock", "http.route": "/stock"}
with tracer.start_as_current_span("GET /stock", kind=trace.SpanKind.SERVER, attributes=attributes) as span:
    try:
        raise ValueError("from the stock configurator")
    except ValueError as exc:
        span.record_exception(exc)
trace.get_tracer_provider().shutdown()
"""


def test_the_sentry_exporter_under_opentelemetrys_own_configurator(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    env = program_env(
        OTEL_TRACES_EXPORTER="otlp,sentry",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",  # without it, "otlp" is gRPC here: see the next test
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp_receiver.endpoint,
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        SENTRY_DSN=sentry_receiver.dsn,
        SENTRY_RELEASE="stock@1",
    )
    done = subprocess.run([sys.executable, "-c", STOCK], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (span,) = otlp_receiver.spans()
    (transaction,) = sentry_receiver.transactions()
    (error,) = sentry_receiver.events()
    assert transaction["transaction"] == "GET /stock" and transaction["release"] == "stock@1"
    assert transaction["contexts"]["trace"]["trace_id"] == error["contexts"]["trace"]["trace_id"] == span.trace_id
    assert error["exception"]["values"][-1]["value"] == "from the stock configurator"


def test_the_grpc_trap_and_what_the_distro_does_about_it() -> None:
    probe = (
        "import os\n"
        "from opentelemetry.sdk._configuration import _get_exporter_names\n"
        "import sys\n"
        "if sys.argv[1] == 'distro':\n"
        "    from bridge.distro import BridgeDistro\n"
        "    BridgeDistro().configure()\n"
        "print(_get_exporter_names('traces'), os.environ.get('OTEL_PYTHON_CONFIGURATOR'))\n"
    )
    env = program_env(OTEL_TRACES_EXPORTER="otlp")
    plain = subprocess.run([sys.executable, "-c", probe, "plain"], env=env, capture_output=True, text=True, check=True)
    fixed = subprocess.run([sys.executable, "-c", probe, "distro"], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "['otlp_proto_grpc'] None"  # what OpenTelemetry does on its own
    assert fixed.stdout.strip() == "['otlp_proto_http'] sentry_bridge"
