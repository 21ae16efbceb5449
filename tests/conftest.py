"""Session fixtures for the real judges (docs/design.md); the peers live in tests/peers/.

- ``bugsink`` (session): a real Bugsink server; tests that use it are marked ``bugsink`` automatically.
- ``otlp_receiver`` (function): an OTLP/HTTP receiver decoding with ``opentelemetry-proto``.
- ``sentry_receiver`` (function): a Sentry envelope receiver judging with Relay's normalizer.
The receivers fail the test at teardown if anything they received was undecodable or invalid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Optional

import pytest

import bridge
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

_started: list[Bugsink] = []


@pytest.fixture(scope="session")
def bugsink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bugsink]:
    """One real Bugsink for the session; isolate with ``bugsink.new_project(name)``. No network: an error."""
    server = Bugsink(tmp_path_factory.mktemp("bugsink"))
    _started.append(server)
    with server:
        yield server


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver
        receiver.assert_all_valid()


@pytest.fixture
def sentry_receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as receiver:
        yield receiver
        receiver.assert_all_valid()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "bugsink" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.bugsink)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    server: Optional[Bugsink] = _started[0] if _started else None
    if server is not None and server.start_seconds:
        terminalreporter.write_line(
            f"bugsink {server.url}: install/check {server.install_seconds:.1f}s, start {server.start_seconds:.1f}s"
        )


@pytest.fixture(autouse=True)
def _no_bridge_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without an active bridge and without the user's OTEL_/SENTRY_ variables."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "SENTRY_")):
            monkeypatch.delenv(name)
    yield
    bridge.shutdown(timeout=1.0)
