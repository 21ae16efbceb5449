"""A real OpenTelemetry Collector on loopback: the binary ``scripts/otelcol.sh`` builds, one process per instance.

``collector_binary()`` builds (first time: minutes) or finds the cached binary; a failed build is an error,
never a skip. ``Collector(binary, configs, workdir, sets=..., env=...)`` runs one instance: every listening
port is moved to a free loopback port with ``--set`` (the files' own ``0.0.0.0:...`` stay as written), the
collector's own metrics are served on a loopback port of their own, and ``start()`` returns once the
``health_check`` extension answers 200. ``metric(name, **labels)`` reads the collector's own counters.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Callable, Optional

from tests.httpserver import unused_port

__all__ = ["ROOT", "collector_binary", "validate", "Collector", "MetricSample"]

ROOT = Path(__file__).resolve().parent.parent.parent
_built: list[Path] = []

MetricSample = tuple[str, dict[str, str], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def collector_binary() -> Path:
    """The collector ``scripts/otelcol.sh`` builds from ``scripts/otelcol-builder.yaml`` (cached by its hash)."""
    if _built:
        return _built[0]
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "otelcol.sh")], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/otelcol.sh failed ({result.returncode}):\n{result.stderr[-3000:]}")
    binary = Path(result.stdout.strip().splitlines()[-1])
    assert binary.is_file(), f"scripts/otelcol.sh printed {binary}, which is not a file"
    _built.append(binary)
    return binary


def _config_args(configs: Iterable[Path | str], sets: Mapping[str, str]) -> list[str]:
    return [f"--config={config}" for config in configs] + [f"--set={key}={value}" for key, value in sets.items()]


def validate(
    binary: Path, configs: Sequence[Path | str], env: Optional[Mapping[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """``otelcol validate`` on ``configs`` (merged in order, as the collector merges several --config)."""
    return subprocess.run(
        [str(binary), "validate", *_config_args(configs, {})],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(env) if env is not None else _clean_env(),
        check=False,
    )


def _clean_env() -> dict[str, str]:
    """This process's environment without the user's OTEL_/SENTRY_ variables (the files read none of them)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}


class Collector:
    """One collector process. ``ports`` maps each setting path moved to loopback to its port."""

    def __init__(
        self,
        binary: Path,
        configs: Sequence[Path | str],
        workdir: Path,
        *,
        name: str,
        listen: Sequence[str] = (),
        sets: Optional[Mapping[str, str]] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        """``listen``: setting paths holding a listen address (``receivers::otlp::protocols::grpc::endpoint``);
        each gets ``127.0.0.1:<free port>``. ``extensions::health_check::endpoint`` always does."""
        self.name = name
        self.binary = binary
        self.ports = {path: unused_port() for path in ("extensions::health_check::endpoint", *listen)}
        self.metrics_port = unused_port()
        overrides = {path: f"127.0.0.1:{port}" for path, port in self.ports.items()}
        prometheus = f"{{host: 127.0.0.1, port: {self.metrics_port}, without_units: true}}"
        overrides["service::telemetry::metrics::readers"] = f"[{{pull: {{exporter: {{prometheus: {prometheus}}}}}}}]"
        overrides.update(sets or {})
        self.args = [str(binary), *_config_args(configs, overrides)]
        self.env = {**_clean_env(), **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.process: Optional[subprocess.Popen[bytes]] = None

    def port(self, path: str) -> int:
        return self.ports[path]

    def start(self, ready_timeout: float = 60.0) -> Collector:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_healthy(ready_timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        """Until the health_check extension answers 200 (the collector started every pipeline)."""
        url = f"http://127.0.0.1:{self.ports['extensions::health_check::endpoint']}/"
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"collector {self.name} exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"collector {self.name} not healthy after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)  # between readiness probes, not a synchronisation

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: the collector drains its pipelines and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def samples(self) -> list[MetricSample]:
        """The collector's own metrics (Prometheus text) as (name without ``_total``, labels, value)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        samples = []
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(_LABEL.findall(match[2] or ""))
                samples.append((match[1].removesuffix("_total"), labels, float(match[3])))
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every sample of ``name`` whose labels include ``labels`` (0 when there is none yet)."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples()
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    """Poll ``condition`` (a collector counter, a receiver's count) until true; AssertionError with ``what()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what()}")
        time.sleep(0.1)  # between polls of the condition, not a synchronisation
