"""``otel-sentry-bridge check`` against real receivers, a real refusal, an unreachable port and bad settings."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from urllib.parse import urlsplit

import pytest

from bridge.check import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, add_parser, mask_url, run_check
from tests.httpserver import Reply, unused_port
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver


def check(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = run_check(list(argv), out)
    return status, out.getvalue()


def line_of(output: str, needle: str) -> str:
    found = [line for line in output.splitlines() if needle in line]
    assert found, f"{needle!r} not in:\n{output}"
    return found[0]


# -- configuration ----------------------------------------------------------------------------------
def test_the_printout_masks_secrets_and_says_where_each_value_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", "https://0123456789abcdefsecret@o1.ingest.sentry.io/5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20topsecret,x-tenant=acme-private")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:hunter2@collector.example:4318")
    status, output = check("--service-name", "checkout", "--no-send")
    assert status == EXIT_OK, output
    for secret in ("0123456789abcdefsecret", "topsecret", "acme-private", "hunter2"):
        assert secret not in output
    assert "https://0123****@o1.ingest.sentry.io/5" in line_of(output, "dsn ")
    assert line_of(output, "dsn ").endswith("environment (SENTRY_DSN)")
    assert "authorization=****, x-tenant=****" in line_of(output, "otlp_headers")
    assert "https://user:****@collector.example:4318/v1/traces" in line_of(output, "otlp_endpoint")
    assert line_of(output, "otlp_endpoint").endswith("environment (OTEL_EXPORTER_OTLP_ENDPOINT)")
    assert line_of(output, "service_name").split() == ["service_name", "checkout", "argument"]
    assert line_of(output, "  sample_rate ").split() == ["sample_rate", "1.0", "default"]
    assert line_of(output, "propagators").split()[-1] == "default"
    assert "Nothing sent" in output


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        ({"SENTRY_DSN": "https://o1.ingest.sentry.io/5"}, (), "SENTRY_DSN='https://o1.ingest.sentry.io/5': no public"),
        ({"SENTRY_TRACES_SAMPLE_RATE": "2"}, (), "SENTRY_TRACES_SAMPLE_RATE='2': a sample rate must be between 0 and"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, (), "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ({}, ("--set", "no_such_option=1"), "no_such_option='1': unknown option"),
        ({"OTEL_PROPAGATORS": "tracecontext,b3"}, (), "OTEL_PROPAGATORS='tracecontext,b3': no propagator named 'b3'"),
        ({}, ("--set", "novalue"), "expected OPTION=VALUE"),
    ],
)
def test_an_invalid_configuration_exits_2_and_says_why(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: tuple[str, ...], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, output = check(*argv)
    assert status == EXIT_CONFIG
    assert expected in line_of(output, "FAIL configuration")


def test_traps_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317/v1/traces")  # both traps at once
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "no_such_sampler")
    status, output = check("--no-send")
    assert status == EXIT_OK
    assert "port 4317, OTLP/gRPC's" in output
    assert "already ends with /v1/traces and gets /v1/traces appended" in output
    assert "OpenTelemetry's own configurator would pick gRPC" in output
    assert "'no_such_sampler' is not a known sampler" in line_of(output, "warn")


def test_mask_url() -> None:
    assert mask_url("http://a:b@h:1/p") == "http://a:****@h:1/p"
    assert mask_url("http://h/p") == "http://h/p"


# -- sends ------------------------------------------------------------------------------------------
def test_everything_reachable(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", otlp_receiver.url + "/v1/metrics")
    monkeypatch.setenv("SENTRY_DSN", sentry_receiver.dsn)
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
    status, output = check("--environment", "checking")
    assert status == EXIT_OK, output
    trace_id = line_of(output, "trace id").split("trace id ")[1].rstrip("):")
    assert "ok    OTLP test trace (2 spans)" in output and "the collector accepted it (HTTP 200)" in output
    assert "Sentry accepted it (HTTP 200" in line_of(output, "Sentry test transaction")
    assert "Sentry accepted it (HTTP 200" in line_of(output, "Sentry test error")
    assert "the collector accepted it (HTTP 200)" in line_of(output, "OTLP test metric point")
    assert "All 4 sends succeeded." in output
    [point] = otlp_receiver.points("http.server.request.duration")
    assert (point.count, point.attributes["http.route"]) == (1, "/otel-sentry-bridge/check")
    # What arrived is a real trace, the same on both sides.
    spans = otlp_receiver.spans()
    assert {span.trace_id for span in spans} == {trace_id}
    root = next(span for span in spans if span.kind == "SERVER")
    assert [name for name, _ in root.events] == ["exception"]
    (transaction,) = sentry_receiver.transactions()
    (error,) = sentry_receiver.events()
    assert transaction["contexts"]["trace"]["trace_id"] == error["contexts"]["trace"]["trace_id"] == trace_id
    assert transaction["environment"] == error["environment"] == "checking"
    assert error["exception"]["values"][-1]["type"] == "CheckError"
    # The DSC agrees with the decision (the check always samples its trace, whatever the rate).
    for received in sentry_receiver.received:
        dsc = json.loads(received.request.data.partition(b"\n")[0])["trace"]
        assert dsc["sampled"] == "true" and float(dsc["sample_rand"]) < float(dsc["sample_rate"])


def test_sentry_refusing_the_key_is_explained(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("SENTRY_DSN", sentry_receiver.dsn.replace("publickey@", "wrongkey@"))
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    status, output = check()
    assert status == EXIT_FAILED
    assert len(sentry_receiver.take_problems()) == 2  # the receiver refused both, as Sentry would
    line = line_of(output, "Sentry test error")
    assert line.startswith("  FAIL") and "Sentry answered 403: the key in SENTRY_DSN is not valid for project 1" in line
    assert "ok    OTLP test trace" in output
    assert "2 of 3 sends failed." in output


@pytest.mark.parametrize(
    ("status", "explained"),
    [
        (429, "the project or key is rate-limited or over quota (limits: 60:error:key)"),
        (404, "no project 1 at 127.0.0.1:"),
        (500, "Sentry failed internally"),
    ],
)
def test_other_sentry_answers(
    monkeypatch: pytest.MonkeyPatch, sentry_receiver: SentryReceiver, status: int, explained: str
) -> None:
    monkeypatch.setenv("SENTRY_DSN", sentry_receiver.dsn)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "sentry")
    sentry_receiver.responder = lambda request: Reply(
        status, {"X-Sentry-Rate-Limits": "60:error:key", "Content-Type": "application/json"}, b'{"detail":"nope"}'
    )
    code, output = check()
    assert code == EXIT_FAILED
    assert f"Sentry answered {status}: {explained}" in line_of(output, "Sentry test error")
    assert "(it said: nope)" in line_of(output, "Sentry test error")
    assert "skip" in line_of(output, "OTLP")


def test_unreachable_backends_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    otlp_port, sentry_port = unused_port(), unused_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{otlp_port}/v1/traces")
    monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{sentry_port}/1")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    status, output = check("--timeout", "5")
    assert status == EXIT_FAILED
    assert f"nothing listens at 127.0.0.1:{otlp_port} (connection refused)" in line_of(output, "OTLP test trace")
    assert f"nothing listens at 127.0.0.1:{sentry_port}" in line_of(output, "Sentry test transaction")
    assert "3 of 3 sends failed." in output


def test_a_wrong_otlp_path_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/trace")
        status, output = check()
        assert len(receiver.take_problems()) == 1
    assert status == EXIT_FAILED
    line = line_of(output, "OTLP test trace")
    assert "the collector answered 404: nothing at the path /v1/trace; OTLP/HTTP traces go to /v1/traces" in line


def test_against_a_real_sentry_compatible_server(
    monkeypatch: pytest.MonkeyPatch, bugsink: Bugsink, otlp_receiver: OtlpReceiver
) -> None:
    dsn, project_id = bugsink.new_project("check")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    status, output = check("--dsn", dsn)
    assert status == EXIT_OK, output
    [stored] = bugsink.wait_for_events(1, project_id=project_id)
    assert stored["data"]["exception"]["values"][-1]["type"] == "CheckError"
    error_line = line_of(output, "Sentry test error")
    assert uuid.UUID(stored["event_id"]).hex in error_line

    # The same server, a key it does not know: its own refusal, explained.
    wrong = dsn.replace(urlsplit(dsn).username or "", "0" * 32, 1)
    status, output = check("--dsn", wrong, "--otlp-endpoint", otlp_receiver.endpoint)
    assert status == EXIT_FAILED
    line = line_of(output, "Sentry test error")
    assert line.startswith("  FAIL")
    assert f"Sentry answered 403: the key in SENTRY_DSN is not valid for project {project_id}" in line
    assert "0" * 32 not in output  # the server echoed the DSN: its key is masked there too


def test_add_parser_plugs_into_a_subcommand_cli(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="otel-sentry-bridge")
    add_parser(parser.add_subparsers(dest="command"))
    arguments = parser.parse_args(["check", "--no-send", "--service-name", "cli"])
    assert arguments.run(arguments) == EXIT_OK
    assert line_of(capsys.readouterr().out, "service_name").split() == ["service_name", "cli", "argument"]


def test_a_collector_without_a_metrics_pipeline_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver(metrics=False) as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        status, output = check()
    assert status == EXIT_FAILED
    assert "ok    OTLP test trace" in output
    line = line_of(output, "OTLP test metric point")
    assert line.startswith("  FAIL") and f"to {receiver.url}/v1/metrics" in line
    assert "answered 404: nothing takes metrics at /v1/metrics: the collector seems to have no metrics pipeline" in line
    assert "OTEL_METRICS_EXPORTER=none" in line
