"""``otel-sentry-bridge serve`` as real processes: token rotation by SIGHUP, ``serve --check``, and
TLS + tokens under a real gunicorn with the real OTLPSpanExporter."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.httpserver import unused_port
from tests.peers.sentry import SentryReceiver
from tests.serve_support import encode, finished_spans
from tests.test_serve_security import export, post, request_span
from tests.tls_support import make_pki

ROOT = Path(__file__).resolve().parent.parent
OLD = "old-token-0000000000000000"
NEW = "new-token-1111111111111111"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env.update(extra)
    return env


def wait_for_line(stream: IO[str], text: str) -> str:
    for line in stream:
        if text in line:
            return line
    raise AssertionError(f"the process ended without logging {text!r}")


@contextmanager
def gunicorn_serve(env: dict[str, str], threads: int) -> Iterator[int]:
    """``serve``'s app under a real gunicorn (one worker, ``threads`` threads, its TLS config module); the
    port once the worker booted. Leaving the block stops it with SIGTERM, which must end it cleanly."""
    port = unused_port()
    command = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "-c", "python:bridge.receiver.gunicorn_tls",
        "--workers", "1", "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
        "bridge.receiver.app:create_app()",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        wait_for_line(process.stderr, "Booting worker")
        yield port
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def body() -> bytes:
    return bytes(encode(finished_spans(request_span, {"service.name": "shop"})).SerializeToString())


def test_sighup_rotates_tokens_and_an_unreadable_file_keeps_the_old(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{OLD}\n")
    command = [sys.executable, "-m", "bridge.cli", "serve", "--listen", "127.0.0.1:0"]
    command += ["--bearer-token-file", str(tokens)]
    env = clean_env(SENTRY_DSN="https://key@sentry.invalid/1", OTEL_SENTRY_BRIDGE_ROOT_DELAY="60")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        url = wait_for_line(process.stderr, "listening on ").split("listening on ", 1)[1].strip()
        url = url.removesuffix("/v1/traces")
        assert post(url, body(), {"Authorization": f"Bearer {OLD}"})[0] == 200
        assert post(url, body(), {"Authorization": f"Bearer {NEW}"})[0] == 401

        tokens.write_text(f"{NEW}\n")
        process.send_signal(signal.SIGHUP)
        wait_for_line(process.stderr, "reloaded (1 tokens)")
        assert post(url, body(), {"Authorization": f"Bearer {NEW}"})[0] == 200
        assert post(url, body(), {"Authorization": f"Bearer {OLD}"})[0] == 401

        tokens.unlink()  # at reload, an unreadable file keeps the tokens in use, with a warning
        process.send_signal(signal.SIGHUP)
        warning = wait_for_line(process.stderr, "not reloaded")
        assert str(tokens) in warning and NEW not in warning
        assert post(url, body(), {"Authorization": f"Bearer {NEW}"})[0] == 200

        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
        assert process.wait(30) == 0
        assert OLD not in rest and NEW not in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_serve_check_warns_about_an_exposed_listener(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bridge.cli", "serve", "--check", "--listen", "0.0.0.0:4318"]
    env = clean_env(SENTRY_DSN="https://key@sentry.invalid/1")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "WARNING: serve listens on 0.0.0.0 (beyond loopback) without authentication" in result.stderr
    missing = tmp_path / "missing.txt"
    result = subprocess.run(
        [*command, "--bearer-token-file", str(missing)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and str(missing) in result.stderr


def test_tls_and_tokens_under_gunicorn(
    tmp_path: Path, sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # it would win over certificate_file in requests
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = make_pki(tmp_path / "pki")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{OLD} shop\n")
    env = clean_env(
        SENTRY_DSN=sentry_receiver.dsn,
        OTEL_SENTRY_BRIDGE_ROOT_DELAY="0",
        OTEL_SENTRY_BRIDGE_BEARER_TOKEN_FILE=str(tokens),
        OTEL_SENTRY_BRIDGE_TLS_CERT=str(pki.server_cert),
        OTEL_SENTRY_BRIDGE_TLS_KEY=str(pki.server_key),
        OTEL_SENTRY_BRIDGE_TLS_CLIENT_CA=str(pki.ca),
    )
    with gunicorn_serve(env, threads=4) as port:
        url = f"https://127.0.0.1:{port}"
        client = {"client_certificate_file": str(pki.client_cert), "client_key_file": str(pki.client_key)}
        tls = {"certificate_file": str(pki.ca), **client}
        assert export(url, "shop", headers={"Authorization": f"Bearer {OLD}"}, **tls) == "SUCCESS"
        assert export(url, "shop", timeout=1, **tls) == "FAILURE"  # no token: 401
        assert export(url, "billing", headers={"Authorization": f"Bearer {OLD}"}, **tls) == "SUCCESS"  # partial
        assert export(url, "shop", headers={"Authorization": f"Bearer {OLD}"}, certificate_file=str(pki.ca),
                      timeout=1) == "FAILURE"  # no client certificate
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
    assert transaction["tags"]["service.name"] == "shop"
    assert len(sentry_receiver.transactions()) == 1  # nothing of billing, nothing without a token


def test_a_stalled_tls_handshake_under_gunicorn_is_bounded(
    tmp_path: Path, sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker thread: a client that starts a handshake and stalls must not hold it for good."""
    from tests.test_serve_hostile_connections import closed_by_server

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = make_pki(tmp_path / "pki")
    env = clean_env(
        SENTRY_DSN=sentry_receiver.dsn,
        OTEL_SENTRY_BRIDGE_ROOT_DELAY="0",
        OTEL_SENTRY_BRIDGE_TLS_CERT=str(pki.server_cert),
        OTEL_SENTRY_BRIDGE_TLS_KEY=str(pki.server_key),
        OTEL_SENTRY_BRIDGE_HANDSHAKE_TIMEOUT="1",
    )
    with gunicorn_serve(env, threads=1) as port:
        stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
        stalled.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
        assert closed_by_server(stalled, 30)
        stalled.close()
        assert export(f"https://127.0.0.1:{port}", "shop", certificate_file=str(pki.ca)) == "SUCCESS"
        sentry_receiver.wait_for_items("transaction", 1)
