"""Real servers drive the request lifecycle: gunicorn (sync and gthread workers), uWSGI (built from PyPI),
waitress and wsgiref, each serving tests/lifecycle_server_app.py in a subprocess. For every body kind (list,
iterator with ``close()``, one with ``len()``, ``wsgi.file_wrapper``, a body raising while iterated, a
``close()`` that raises) the app's ``close()`` is called exactly once, one span is exported per request, and
Sentry gets one transaction per request plus the two errors, in the right traces. One server process per
server, a handful of requests each."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path

import pytest

from tests.lifecycle_support import error_values
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.zero_code_support import BIN, Program, program_env

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.lifecycle_server_app:application"
KINDS = ("list", "generator", "sized", "file", "fails", "close-fails")
CLOSABLE = ("generator", "sized", "file", "fails", "close-fails")  # a list has no close() of its own


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(server: str, port: int) -> tuple[list[str], str]:
    """argv and the line that says the server is ready."""
    bind = f"127.0.0.1:{port}"
    if server.startswith("gunicorn"):
        argv = [str(BIN / "gunicorn"), "--no-control-socket", "--workers", "1", "--bind", bind, "--chdir", str(ROOT)]
        if server == "gunicorn-gthread":
            argv += ["--worker-class", "gthread", "--threads", "2"]
        return argv + [APP], r"Booting worker"
    if server == "uwsgi":
        argv = [str(BIN / "uwsgi"), "--http-socket", bind, "--module", APP, "--processes", "1"]
        argv += ["--threads", "2", "--enable-threads", "--need-app", "--die-on-term", "--chdir", str(ROOT)]
        return argv, r"WSGI app 0 \(mountpoint=''\) ready"
    if server == "waitress":
        return [str(BIN / "waitress-serve"), f"--listen={bind}", "--threads", "2", APP], r"Serving on"
    return [str(BIN / "python"), "-m", "tests.lifecycle_server_app", str(port)], r"wsgiref serving on"


def get(port: int, target: str) -> tuple[int, bytes]:
    """One request on its own connection; a response cut short by a failing body is (status, what came)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as partial:
            return response.status, partial.partial
    except (ConnectionError, http.client.RemoteDisconnected):
        return 0, b""
    finally:
        connection.close()


@pytest.mark.parametrize("server", ["gunicorn-sync", "gunicorn-gthread", "uwsgi", "waitress", "wsgiref"])
def test_every_body_kind_closed_once_and_exported_once(
    server: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    port = free_port()
    argv, ready = command(server, port)
    env = program_env(
        OTEL_SERVICE_NAME=f"lifecycle-{server}",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp_receiver.endpoint,
        SENTRY_DSN=sentry_receiver.dsn,
    )
    program = Program(argv, env, ready, cwd=ROOT)
    try:
        replies = {kind: get(port, f"/{kind}?id={kind}") for kind in KINDS}
        status, counted = get(port, f"/closes?expect={len(CLOSABLE)}")
        assert status == 200, program.output
        flushed = get(port, "/flush")[0]
    finally:
        output = program.stop()
    assert flushed == 200, output
    for kind in ("list", "generator", "sized", "close-fails"):
        assert replies[kind] == (200, b"chunk\n" * 2), (kind, output)
    assert replies["file"] == (200, b"file chunk\n" * 3), output
    assert json.loads(counted) == {kind: 1 for kind in CLOSABLE}, output

    spans = [span for span in otlp_receiver.spans() if span.attributes["url.path"].lstrip("/") in KINDS]
    by_kind = {span.attributes["url.path"].lstrip("/"): span for span in spans}
    assert len(spans) == len(KINDS) and sorted(by_kind) == sorted(KINDS), [s.name for s in spans]
    assert {kind for kind, span in by_kind.items() if span.status == "ERROR"} == {"fails", "close-fails"}
    transactions = {t["contexts"]["trace"]["trace_id"]: t for t in sentry_receiver.transactions()}
    assert all(span.trace_id in transactions for span in spans)
    assert len([t for t in transactions.values() if t["transaction"].removeprefix("GET /") in KINDS]) == len(KINDS)
    errors = {error_values(event): event["contexts"]["trace"]["trace_id"] for event in sentry_receiver.events()}
    assert errors == {
        "RuntimeError: failed at chunk 1": by_kind["fails"].trace_id,
        "OSError: close failed": by_kind["close-fails"].trace_id,
    }, output
