"""bridge.otlp_transport: OpenTelemetry's OTLP/HTTP exporters over the bridge's keep-alive client, driven
through the logs leg as users configure it (OTEL_* variables, real HTTP and TLS over loopback): the
exporter's own retry policy (503 with Retry-After, a dropped connection), headers, compression, mutual
TLS, one connection for many exports, a new one after fork(), and the cases left to ``requests``."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

import bridge
from bridge.otlp_transport import SocketTransport, socket_transport
from tests.httpserver import Reply, Request
from tests.peers.otlp_logs import OtlpLogsReceiver, accept
from tests.tls_support import make_pki

app_logger = logging.getLogger("shop.transport")


@pytest.fixture(autouse=True)
def _warning_level() -> Iterator[None]:
    app_logger.setLevel(logging.INFO)
    yield


def _logs_leg(monkeypatch: pytest.MonkeyPatch, endpoint: str, **extra: str) -> None:
    settings = {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": endpoint,
                "OTEL_TRACES_EXPORTER": "none", **extra}  # fmt: skip
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bridge.init()


def _transport() -> object:
    from bridge.setup import active

    leg = active().logs  # type: ignore[union-attr]
    return leg.exporter.inner._client._transport


def test_exports_go_over_one_kept_alive_connection_with_headers_and_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpLogsReceiver() as receiver:
        _logs_leg(monkeypatch, receiver.endpoint, OTEL_EXPORTER_OTLP_LOGS_HEADERS="x-tenant=blue",
                  OTEL_EXPORTER_OTLP_LOGS_COMPRESSION="gzip", OTEL_BLRP_MAX_EXPORT_BATCH_SIZE="3")  # fmt: skip
        assert isinstance(_transport(), SocketTransport)
        for index in range(9):
            app_logger.warning("record %d", index)
        assert bridge.flush(5)
        assert [r.body for r in receiver.records] == [f"record {n}" for n in range(9)]
        assert receiver.problems == []
        assert len(receiver.requests) >= 3 and receiver.connections == 1
        assert {r.headers.get("x-tenant") for r in receiver.requests} == {"blue"}
        assert {r.headers.get("content-encoding") for r in receiver.requests} == {"gzip"}
        stats = bridge.stats().logs
        assert stats is not None and (stats.exported, stats.lost) == (9, 0)


def test_the_exporters_retry_policy_holds_503_with_retry_after_then_success(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [Reply(503, {"Retry-After": "0"}), Reply(503, {"Retry-After": "0"})]

    def unavailable_twice(request: Request) -> Reply:
        return answers.pop(0) if answers else accept(request)

    with OtlpLogsReceiver(unavailable_twice) as receiver:
        _logs_leg(monkeypatch, receiver.endpoint)
        app_logger.warning("after two 503s")
        assert bridge.flush(10)
        assert [r.body for r in receiver.records] == ["after two 503s"] * 3  # the same batch, three times
        stats = bridge.stats().logs
        assert stats is not None and (stats.exported, stats.failed) == (1, 0)


def test_a_400_is_not_retried_and_counts_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpLogsReceiver(lambda request: Reply(400)) as receiver:
        _logs_leg(monkeypatch, receiver.endpoint)
        app_logger.warning("rejected")
        bridge.flush(5)
        assert len(receiver.requests) == 1
        stats = bridge.stats().logs
        assert stats is not None and (stats.exported, stats.failed) == (0, 1)


def test_a_connection_the_collector_closed_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpLogsReceiver() as receiver:
        _logs_leg(monkeypatch, receiver.endpoint)
        app_logger.warning("first")
        assert bridge.flush(5)
    with OtlpLogsReceiver(port=receiver.port) as again:  # the collector restarted on the same port
        app_logger.warning("second")
        assert bridge.flush(5)
        assert [r.body for r in again.records] == ["second"]
    stats = bridge.stats().logs
    assert stats is not None and (stats.exported, stats.failed) == (2, 0)


def test_mutual_tls_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(pki.server_cert, pki.server_key)
    server_side.load_verify_locations(pki.ca)
    server_side.verify_mode = ssl.CERT_REQUIRED
    with OtlpLogsReceiver(tls=server_side) as receiver:
        assert receiver.endpoint.startswith("https://")
        _logs_leg(monkeypatch, receiver.endpoint, OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE=str(pki.ca),
                  OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(pki.client_cert),
                  OTEL_EXPORTER_OTLP_CLIENT_KEY=str(pki.client_key))  # fmt: skip
        assert isinstance(_transport(), SocketTransport)
        app_logger.warning("over mutual TLS")
        assert bridge.flush(5)
        assert [r.body for r in receiver.records] == ["over mutual TLS"]
        # Without the client certificate the collector refuses the handshake: the export fails, counted.
        bridge.shutdown()
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        _logs_leg(monkeypatch, receiver.endpoint, OTEL_EXPORTER_OTLP_LOGS_TIMEOUT="2")
        app_logger.warning("refused")
        bridge.flush(5)
        assert [r.body for r in receiver.records] == ["over mutual TLS"]
        stats = bridge.stats().logs
        assert stats is not None and stats.exported == 0 and stats.failed == 1


def test_where_requests_is_needed_the_exporter_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    assert socket_transport("http://collector:4318/v1/logs", "LOGS") is not None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert socket_transport("http://collector:4318/v1/logs", "LOGS") is None  # requests honours the proxy
    monkeypatch.setenv("NO_PROXY", "collector")
    assert socket_transport("http://collector:4318/v1/logs", "LOGS") is not None
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER", "vault")
    assert socket_transport("http://collector:4318/v1/logs", "LOGS") is None  # a requests.Session plug-in
    assert socket_transport("http://collector:4318/v1/traces", "TRACES") is not None
    missing = tmp_path / "missing-ca.pem"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(missing))
    with caplog.at_level(logging.WARNING, logger="bridge.otlp_transport"):
        assert socket_transport("https://collector:4318/v1/traces", "TRACES") is None
    assert "TLS settings for OTLP traces could not be loaded" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_a_forked_child_opens_its_own_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpLogsReceiver() as receiver:
        _logs_leg(monkeypatch, receiver.endpoint)
        app_logger.warning("parent")
        assert bridge.flush(5)
        pid = os.fork()
        if pid == 0:  # the child: log, flush, and say by the exit code whether it worked
            try:
                app_logger.warning("child")
                os._exit(0 if bridge.flush(5) else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        app_logger.warning("parent again")
        assert bridge.flush(5)
        assert sorted(r.body for r in receiver.records) == ["child", "parent", "parent again"]
        assert receiver.connections == 2


def test_an_answer_that_never_comes_is_not_sent_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request was written and the collector may have it: as with ``requests``' read timeout, the
    exporter does not retry it (a refused connection is retried: the retry-policy test above)."""
    hold = True

    def hang_first(request: Request) -> Reply:
        nonlocal hold
        if hold:
            hold = False
            return Reply(hang=True)
        return accept(request)

    with OtlpLogsReceiver(hang_first) as receiver:
        _logs_leg(monkeypatch, receiver.endpoint, OTEL_EXPORTER_OTLP_LOGS_TIMEOUT="0.5")
        app_logger.warning("held")
        bridge.flush(5)
        assert [r.body for r in receiver.records] == ["held"]  # one POST: not sent again
        app_logger.warning("next")
        assert bridge.flush(5)
        assert [r.body for r in receiver.records] == ["held", "next"]
        stats = bridge.stats().logs
        assert stats is not None and (stats.exported, stats.failed) == (1, 1)
