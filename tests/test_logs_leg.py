"""The logs leg in process: Python logging → the real SDK's LoggerProvider → the real OTLP/HTTP log exporter
→ a loopback receiver decoding with opentelemetry-proto; exceptions as log records
(OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN) with Sentry judged by Relay's normalizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from werkzeug.test import Client

import bridge
from bridge.config import Options
from bridge.errors import ConfigError
from tests.peers.otlp import OtlpReceiver
from tests.peers.otlp_logs import OtlpLogsReceiver
from tests.peers.sentry import SentryReceiver

Environ = dict[str, Any]
app_logger = logging.getLogger("shop.checkout")


@pytest.fixture
def logs_receiver() -> Iterator[OtlpLogsReceiver]:
    with OtlpLogsReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _info_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def charge(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    app_logger.info("charging %s", "order-7", extra={"order.id": "7", "obj": object()})
    logging.getLogger("bridge.wsgi").warning("the bridge's own record stays out")
    logging.getLogger("opentelemetry.sdk").warning("so does OpenTelemetry's")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def explode(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    def validate_card(number: str) -> None:
        raise ValueError(f"card {number} declined")

    validate_card("4242")
    return []  # pragma: no cover


def test_each_record_reaches_v1_logs_once_with_its_requests_span(
    logs_receiver: OtlpLogsReceiver, otlp_receiver: OtlpReceiver
) -> None:
    os.environ["OTEL_LOGS_EXPORTER"] = "otlp"
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, logs_endpoint=logs_receiver.endpoint, service_name="shop")
    client = Client(bridge.BridgeMiddleware(charge))
    assert client.get("/pay", buffered=True).status_code == 200
    app_logger.warning("outside any request")
    assert bridge.flush(5)
    records = logs_receiver.records
    assert [r.body for r in records] == ["charging order-7", "outside any request"]  # once each, no bridge/otel
    span = otlp_receiver.wait_for_spans(1)[0]
    inside, outside = records
    assert (inside.trace_id, inside.span_id) == (span.trace_id, span.span_id)
    assert (outside.trace_id, outside.span_id) == ("", "")
    assert inside.severity == "INFO" and outside.severity == "WARN"
    assert inside.scope == "shop.checkout"
    assert inside.attributes["order.id"] == "7" and "obj" not in inside.attributes
    assert inside.attributes["code.function.name"] == "charge"
    assert inside.resource["service.name"] == "shop"
    assert logs_receiver.problems == []


def test_logger_exception_carries_exception_attributes(logs_receiver: OtlpLogsReceiver) -> None:
    bridge.init(exporters="none", logs_exporters="otlp", logs_endpoint=logs_receiver.endpoint)
    try:
        {}["missing"]
    except KeyError:
        app_logger.exception("lookup failed")
    assert bridge.flush(5)
    (record,) = logs_receiver.records
    assert record.severity == "ERROR" and record.body == "lookup failed"
    assert record.attributes["exception.type"] == "KeyError"
    assert "test_logger_exception_carries_exception_attributes" in record.attributes["exception.stacktrace"]


def test_endpoint_headers_and_gzip_from_the_environment(logs_receiver: OtlpLogsReceiver) -> None:
    environ = {
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": logs_receiver.url + "/",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-tenant=blue",
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "2",
        "OTEL_TRACES_EXPORTER": "none",
    }
    os.environ.update(environ)
    options = Options.resolve({}, environ)
    assert options.logs_endpoint == logs_receiver.url + "/v1/logs"
    assert options.blrp_max_export_batch_size == 2
    bridge.init()
    for index in range(5):
        app_logger.warning("record %d", index)
    assert bridge.flush(5)
    assert len(logs_receiver.records) == 5
    assert {r.request_encoding for r in logs_receiver.records} == {"gzip"}
    assert all(request.headers.get("x-tenant") == "blue" for request in logs_receiver.requests)
    assert len(logs_receiver.requests) >= 3  # batches of at most 2
    stats = bridge.stats().logs
    assert stats is not None and (stats.exported, stats.failed) == (5, 0)


def test_the_signal_endpoint_is_used_as_is_and_bad_settings_name_themselves() -> None:
    options = Options.resolve({}, {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:9/x"})
    assert options.logs_endpoint == "http://c:9/x"
    assert Options.resolve({}, {}).logs_exporters == ()  # off unless set
    assert Options.resolve({}, {"OTEL_LOGS_EXPORTER": "none"}).logs_enabled is False
    with pytest.raises(ConfigError, match="OTEL_LOGS_EXPORTER.*'loki'"):
        Options.resolve({}, {"OTEL_LOGS_EXPORTER": "loki"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        Options.resolve({}, {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "c:9"})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL.*grpc"):
        Options.resolve({}, {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError, match="exception_signal"):
        Options.resolve({"exception_signal": "events"}, {})
    opt_in = {"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": "http,logs/dup"}
    assert Options.resolve({}, opt_in).exception_signal == "logs/dup"
    assert Options.resolve({}, {"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": "database"}).exception_signal == "span"


def _frames(event: dict[str, Any]) -> list[tuple[str, str]]:
    value = event["exception"]["values"][-1]
    return [(frame["function"], frame["module"]) for frame in value["stacktrace"]["frames"]]


@pytest.mark.parametrize("signal", ["span", "logs", "logs/dup"])
def test_exception_signal_modes_and_one_sentry_error_with_the_same_frames(
    signal: str, logs_receiver: OtlpLogsReceiver, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    if signal != "span":
        os.environ["OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN"] = signal
    bridge.init(
        dsn=sentry_receiver.dsn,
        otlp_endpoint=otlp_receiver.endpoint,
        logs_exporters="otlp",
        logs_endpoint=logs_receiver.endpoint,
    )
    client = Client(bridge.BridgeMiddleware(explode))
    with pytest.raises(ValueError, match="declined"):
        client.get("/pay", buffered=True)
    assert bridge.flush(5)
    span = otlp_receiver.wait_for_spans(1)[0]
    assert span.status == "ERROR" and span.attributes["error.type"] == "ValueError"
    span_events = [name for name, _ in span.events if name == "exception"]
    assert logs_receiver.problems == []
    exception_records = [r for r in logs_receiver.records if r.event_name == "exception"]
    assert len(span_events) == (0 if signal == "logs" else 1)
    assert len(exception_records) == (0 if signal == "span" else 1)
    for record in exception_records:
        assert (record.trace_id, record.span_id) == (span.trace_id, span.span_id)
        assert record.severity == "ERROR"
        assert record.attributes["exception.type"] == "ValueError"
        assert record.attributes["exception.message"] == "card 4242 declined"
        assert "validate_card" in record.attributes["exception.stacktrace"]
    (event,) = sentry_receiver.events()
    assert _frames(event)[-2:] == [("explode", "test_logs_leg"), ("validate_card", "test_logs_leg")]
    assert (event["contexts"]["trace"]["trace_id"], event["contexts"]["trace"]["span_id"]) == (
        span.trace_id,
        span.span_id,
    )
    assert event["transaction"] == "GET /pay"
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False
    sentry_receiver.assert_all_valid()


def test_without_a_logs_exporter_the_opt_in_keeps_span_events(otlp_receiver: OtlpReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, exception_signal="logs")
    client = Client(bridge.BridgeMiddleware(explode))
    with pytest.raises(ValueError):
        client.get("/pay", buffered=True)
    assert bridge.flush(5)
    assert [name for name, _ in otlp_receiver.wait_for_spans(1)[0].events] == ["exception"]


def test_a_forked_child_exports_its_records(logs_receiver: OtlpLogsReceiver) -> None:
    bridge.init(exporters="none", logs_exporters="otlp", logs_endpoint=logs_receiver.endpoint)
    app_logger.warning("parent before fork")
    assert bridge.flush(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            app_logger.warning("from the child %d", os.getpid())
            code = 0 if bridge.flush(5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [r.body for r in logs_receiver.records] == ["parent before fork", f"from the child {pid}"]


def test_reinit_replaces_the_handler_and_shutdown_removes_it(logs_receiver: OtlpLogsReceiver) -> None:
    from bridge.logs import OtlpLogHandler

    for _ in range(2):
        bridge.init(exporters="none", logs_exporters="otlp", logs_endpoint=logs_receiver.endpoint)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, OtlpLogHandler)]
    assert len(handlers) == 1
    app_logger.warning("once")
    assert bridge.flush(5)
    assert [r.body for r in logs_receiver.records] == ["once"]
    bridge.shutdown(1.0)
    assert not [h for h in logging.getLogger().handlers if isinstance(h, OtlpLogHandler)]


def test_check_reports_the_logs_leg_and_sends_a_test_record(
    logs_receiver: OtlpLogsReceiver, otlp_receiver: OtlpReceiver
) -> None:
    import io

    from bridge.check import EXIT_OK, run_check

    environ = {
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": logs_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "api-key=secret-value",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_METRICS_EXPORTER": "none",  # the metrics test point would go to localhost:4318
    }
    out = io.StringIO()
    assert run_check([], out, environ) == EXIT_OK
    output = out.getvalue()
    assert "secret-value" not in output and "api-key=****" in output
    [line] = [line for line in output.splitlines() if "OTLP test log record" in line]
    assert line.strip().startswith("ok") and "accepted it (HTTP 200)" in line
    [record] = logs_receiver.records
    assert record.trace_id == otlp_receiver.wait_for_spans(1)[0].trace_id

    out = io.StringIO()
    opt_in_only = {"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": "logs", "OTEL_TRACES_EXPORTER": "none"}
    run_check(["--no-send"], out, opt_in_only)
    assert "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs needs a logs exporter" in out.getvalue()


def test_zero_code_opentelemetry_instrument_exports_logging_records(
    tmp_path: Any, logs_receiver: OtlpLogsReceiver
) -> None:
    import subprocess

    from tests.zero_code_support import BIN, program_env, require_installed

    require_installed()
    script = tmp_path / "job.py"
    script.write_text('import logging\nlogging.getLogger("job").warning("zero-code record %d", 1)\n')
    env = program_env(
        OTEL_SERVICE_NAME="zero-code-logs",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_LOGS_ENDPOINT=logs_receiver.endpoint,
    )
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), str(script)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [record] = logs_receiver.records  # flushed at exit, once
    assert record.body == "zero-code record 1" and record.resource["service.name"] == "zero-code-logs"


def test_an_opentelemetry_logging_handler_already_installed_means_no_second_one(
    logs_receiver: OtlpLogsReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    import warnings

    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from bridge.logs import OtlpLogHandler

    theirs = LoggerProvider(shutdown_on_exit=False)
    exported = InMemoryLogRecordExporter()
    theirs.add_log_record_processor(SimpleLogRecordProcessor(exported))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK's handler is deprecated in 1.45
        handler = LoggingHandler(logger_provider=theirs)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.logs"):
            bridge.init(exporters="none", logs_exporters="otlp", logs_endpoint=logs_receiver.endpoint)
        assert "adds no log handler of its own" in caplog.text
        assert not [h for h in root.handlers if isinstance(h, OtlpLogHandler)]
        app_logger.warning("exported by the app's own handler only")
        assert bridge.flush(5)
        bodies = [r.log_record.body for r in exported.get_finished_logs()]
        assert bodies.count("exported by the app's own handler only") == 1
        assert logs_receiver.records == []
    finally:
        root.removeHandler(handler)
        theirs.shutdown()


def test_the_console_exporter_prints_each_record(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(
        "import logging, bridge\n"
        "bridge.init(exporters='none', logs_exporters='console')\n"
        "logging.getLogger('job').error('printed %s', 'once')\n"
        "bridge.shutdown()\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["body"] == "printed once" and printed["severity_text"] == "ERROR"


def test_a_refused_export_is_counted_and_never_reaches_the_app() -> None:
    from tests.httpserver import unused_port

    bridge.init(
        exporters="none",
        logs_exporters="otlp",
        logs_endpoint=f"http://127.0.0.1:{unused_port()}/v1/logs",
        logs_timeout=1,
    )
    app_logger.warning("nobody listens")  # returns at once; the export fails on the worker
    bridge.flush(5)
    stats = bridge.stats().logs
    assert stats is not None and (stats.exported, stats.failed) == (0, 1)


def test_a_full_queue_drops_the_oldest_counts_each_and_warns_once(
    logs_receiver: OtlpLogsReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A collector stuck on one export (the fault a real one cannot make on demand) while the app logs on:
    the bounded queue keeps the newest records, every drop is in ``bridge.stats().logs``, and one WARNING
    says so; once the collector answers, what was queued is delivered."""
    import threading

    from tests.httpserver import Reply, Request
    from tests.peers.otlp_logs import accept

    arrived, release = threading.Event(), threading.Event()

    def stuck_once(request: Request) -> Reply:
        if not arrived.is_set():
            arrived.set()
            release.wait(10)
        return accept(request)

    logs_receiver.responder = stuck_once
    for name, value in {
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": logs_receiver.endpoint,
        "OTEL_BLRP_MAX_QUEUE_SIZE": "4",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "2",
        "OTEL_TRACES_EXPORTER": "none",
    }.items():
        monkeypatch.setenv(name, value)
    bridge.init()
    app_logger.warning("first")
    app_logger.warning("second")  # a full batch: the worker exports it, and the collector holds it
    assert arrived.wait(10)
    for index in range(10):
        app_logger.warning("record %d", index)
    stats = bridge.stats().logs
    assert stats is not None and (stats.dropped, stats.queued) == (6, 4)
    release.set()
    assert bridge.flush(10)
    assert [r.body for r in logs_receiver.records] == ["first", "second"] + [f"record {n}" for n in range(6, 10)]
    stats = bridge.stats().logs
    assert stats is not None and (stats.exported, stats.dropped, stats.lost, stats.queued) == (6, 6, 6, 0)
    warnings = [r for r in caplog.records if "OTLP queue is full" in r.getMessage()]
    assert len(warnings) == 1 and "log records" in warnings[0].getMessage()
