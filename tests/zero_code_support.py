"""Helpers for tests that run real programs: the installed entry points, and servers started as subprocesses.

The programs import ``bridge`` from this checkout (``PYTHONPATH``), and find the bridge's plug-ins through
the installed distribution's entry points (``pip install -e .``, as ``scripts/venv.sh`` does).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTRY_POINTS = {
    ("opentelemetry_traces_exporter", "sentry"): "bridge.exporter:SentrySpanExporter",
    ("opentelemetry_propagator", "sentry_bridge"): "bridge.propagation:SentryPropagator",
    ("opentelemetry_distro", "sentry_bridge"): "bridge.distro:BridgeDistro",
    ("opentelemetry_configurator", "sentry_bridge"): "bridge.distro:BridgeConfigurator",
    ("opentelemetry_instrumentor", "bridge_gunicorn"): "bridge.servers:GunicornInstrumentor",
}


def require_installed() -> None:
    """Fail (not skip) when the distribution's entry points are missing or stale."""
    for (group, name), value in ENTRY_POINTS.items():
        found = [ep.value for ep in entry_points(group=group, name=name)]
        if value not in found:
            pytest.fail(f"entry point {group}:{name} = {value} is not installed (found {found}); pip install -e {ROOT}")


def program_env(**variables: str) -> dict[str, str]:
    """A clean environment: this venv's programs, this checkout's ``bridge``, and ``variables``."""
    return {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **variables}


def read_until(stream: IO[str], pattern: str, seen: list[str]) -> re.Match[str]:
    """Block on ``stream`` line by line until ``pattern`` matches (no polling); lines go to ``seen``."""
    for line in stream:
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} never appeared; output:\n{''.join(seen)}")


class Program:
    """A subprocess server: started, waited for (a line it prints), stopped with SIGTERM and reaped."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: str, cwd: Optional[Path] = None) -> None:
        self.output: list[str] = []
        self.process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        stdout = self.process.stdout
        assert stdout is not None
        try:
            self.match = read_until(stdout, ready, self.output)
        except BaseException:
            self.stop()
            raise
        # Keep draining, so a chatty program never blocks on a full pipe.
        self._drain = threading.Thread(target=lambda: self.output.extend(stdout), daemon=True)
        self._drain.start()

    def stop(self, timeout: float = 30.0) -> str:
        """Graceful stop (the program flushes at exit); returns everything it printed."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        finally:
            drain = getattr(self, "_drain", None)
            if drain is not None:
                drain.join(5)
            else:
                self.output.append(self.process.stdout.read() if self.process.stdout else "")
        return "".join(self.output)
