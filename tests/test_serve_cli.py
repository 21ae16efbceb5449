"""The ``otel-sentry-bridge`` command: help everywhere, settings, exit codes, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.receiver.settings import ServeSettings, parse_listen, parse_size

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        cwd=ROOT,
        env={**_clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}


@contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``serve`` in a subprocess; yields it and its URL once it listens (read from its log, no sleeping)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--listen", "127.0.0.1:0", *args],
        cwd=ROOT,
        env={**_clean_env(), **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = ""
        for line in process.stderr:
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip().removesuffix("/v1/traces")
                break
        assert url, "serve did not start"
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_help_on_every_command() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout and "check" in top.stdout
    check = run_cli("check", "--help")
    assert check.returncode == 0 and "--no-send" in check.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for option in ("--listen", "--routes", "--max-body", "--buffer-ttl", "--buffer-size", "--shutdown-timeout"):
        assert option in serve.stdout
    assert "load-balancing exporter keyed by trace id" in " ".join(serve.stdout.split())


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_serve_without_any_dsn_is_a_configuration_error() -> None:
    result = run_cli("serve")
    assert result.returncode == 2
    assert "serve needs SENTRY_DSN, or a routing file (--routes)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "4318"], "--listen='4318': expected HOST:PORT"),
        (["--max-body", "lots"], "--max-body='lots'"),
        (["--threads", "0"], "--threads='0': expected a positive number"),
        (["--routes", "/nonexistent/routes.txt"], "cannot read the routing file"),
    ],
)
def test_bad_settings_exit_2_naming_the_setting(args: list[str], message: str) -> None:
    result = run_cli("serve", *args, env={"SENTRY_DSN": "http://key@127.0.0.1:9/1"})
    assert result.returncode == 2
    assert message in result.stderr


def test_an_address_in_use_exits_1(tmp_path: Path) -> None:
    routes = tmp_path / "routes.txt"
    routes.write_text("dropped =\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--listen", f"127.0.0.1:{port}", "--routes", str(routes))
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr


def test_sigterm_stops_serve_cleanly(tmp_path: Path) -> None:
    routes = tmp_path / "routes.txt"
    routes.write_text("dropped =\n")
    with serving("--routes", str(routes)) as (process, url):
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert process.stderr is not None
        assert "stopped" in process.stderr.read()


def test_sizes_and_addresses() -> None:
    assert parse_size("1048576", "x") == 1 << 20
    assert parse_size("512K", "x") == 512 << 10
    assert parse_size("20MiB", "x") == 20 << 20
    assert parse_size("1g", "x") == 1 << 30
    for bad in ("", "0", "-1", "1.5M", "12 parsecs"):
        with pytest.raises(ConfigError):
            parse_size(bad, "x")
    assert parse_listen("127.0.0.1:4318") == ("127.0.0.1", 4318)
    assert parse_listen("[::1]:4318") == ("::1", 4318)
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in (":4318", "host", "host:99999", "host:http"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_settings_arguments_over_environment_over_defaults() -> None:
    environ = {
        "OTEL_SENTRY_BRIDGE_MAX_BODY": "1M",
        "OTEL_SENTRY_BRIDGE_BUFFER_TTL": "5",
        "OTEL_SENTRY_BRIDGE_LISTEN": "127.0.0.1:9999",
        "SENTRY_DSN": "http://key@127.0.0.1:9/1",
    }
    settings = ServeSettings.from_environ(environ, listen="127.0.0.1:1234", buffer_spans=None)
    assert settings.listen == ("127.0.0.1", 1234)  # argument
    assert settings.max_body == 1 << 20 and settings.buffer_ttl == 5.0  # environment
    assert settings.buffer_spans == 100_000 and settings.routes is None  # defaults
    assert settings.sentry_dsn == "http://key@127.0.0.1:9/1"
    with pytest.raises(ConfigError, match="OTEL_SENTRY_BRIDGE_THREADS"):
        ServeSettings.from_environ({"OTEL_SENTRY_BRIDGE_THREADS": "many"})
    with pytest.raises(ConfigError, match="unknown setting"):
        ServeSettings.from_environ({}, colour="blue")
