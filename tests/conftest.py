"""Session fixtures for the real judges (see ../shared/DESIGN.md, "Tests")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import bridge
from tests.peers.otlp import OtlpReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _no_bridge_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without an active bridge and without the user's OTEL_/SENTRY_ variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("OTEL_", "SENTRY_")):
            monkeypatch.delenv(name)
    yield
    bridge.shutdown(timeout=1.0)
