"""The two-tier gateway of collector-config/ on loopback, for the end-to-end tests of ``test_collector_e2e.py``.

    bridge (in process) ─OTLP/HTTP─▶ agent ─gRPC─▶ tier 1 (load balancer, static resolver)
        ├─gRPC─▶ sampler A ─▶ serve A ─▶ Bugsink        and ─▶ trace backend A (the test OTLP receiver)
        └─gRPC─▶ sampler B ─▶ serve B ─▶ Bugsink        and ─▶ trace backend B

The files run as written; what a test changes is said with ``--set`` and environment variables: loopback
ports, the static resolver in place of DNS (``dns::enabled=false``), a 1 s ``decision_wait``, a short retry
budget towards ``serve``. Each ``serve`` runs as it should beyond loopback: with a bearer token file and a
TLS certificate for 127.0.0.1 signed by a CA made at test time; the samplers get the token
(``BRIDGE_SERVE_TOKEN``) and the CA (``BRIDGE_SERVE_CA_FILE``) and send to https:// URLs. One overlay
swaps the samplers' OTLP/gRPC backend exporter for OTLP/HTTP, because the test's trace-backend receiver
speaks OTLP/HTTP. Each sampler gets its own backend receiver, so a test sees which sampler a trace went to.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tests.httpserver import unused_port
from tests.peers.otelcol import ROOT, Collector
from tests.peers.otlp import OtlpReceiver
from tests.tls_support import Pki, make_pki

__all__ = ["CONFIG_DIR", "GRPC", "HTTP", "Serve", "Pipeline", "pipeline", "BACKEND_OVERLAY", "SERVE_TOKEN"]

CONFIG_DIR = ROOT / "collector-config"
GRPC = "receivers::otlp::protocols::grpc::endpoint"
HTTP = "receivers::otlp::protocols::http::endpoint"
SERVE_TOKEN = "collector-e2e-token-0123456789abcdef"  # the line of every serve's --bearer-token-file
BACKEND_OVERLAY = """\
# Test only: the trace backend is the test's OTLP/HTTP receiver.
exporters:
  otlphttp/backend:
    traces_endpoint: ${env:TEST_BACKEND_TRACES_ENDPOINT}
service:
  pipelines:
    traces/backend:
      exporters: [otlphttp/backend]
"""


class Serve:
    """``otel-sentry-bridge serve`` as its own process (so a test can kill it), ready when /health answers.

    It demands ``SERVE_TOKEN`` (``--bearer-token-file``), speaks HTTPS only (``--tls-cert``/``--tls-key``,
    a certificate of ``pki.ca`` for 127.0.0.1) and requires a client certificate of ``pki.ca``
    (``--tls-client-ca``: mutual TLS)."""

    def __init__(self, dsn: str, workdir: Path, name: str, pki: Pki) -> None:
        self.port = unused_port()
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.dsn = dsn
        self.pki = pki
        self.token_file = workdir / f"{name}-tokens.txt"
        self.token_file.write_text(f"{SERVE_TOKEN}\n")
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.url}/v1/traces"

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts the test CA only and shows the client certificate it signed."""
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(self.pki.client_cert, self.pki.client_key)
        return context

    def health(self) -> dict[str, Any]:
        """serve's /health report (open: no --health-token), over TLS."""
        with urllib.request.urlopen(f"{self.url}/health", timeout=5, context=self.tls()) as answer:
            report: dict[str, Any] = json.loads(answer.read())
        return report

    def start(self, timeout: float = 30.0) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
        env["SENTRY_DSN"] = self.dsn
        command = [sys.executable, "-m", "bridge.cli", "serve", "--listen", f"127.0.0.1:{self.port}"]
        command += ["--root-delay", "0.2", "--shutdown-timeout", "5", "--bearer-token-file", str(self.token_file)]
        command += ["--tls-cert", str(self.pki.server_cert), "--tls-key", str(self.pki.server_key)]
        command += ["--tls-client-ca", str(self.pki.ca)]  # mutual TLS: the samplers show their certificate
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve {self.name} exited {self.process.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2, context=self.tls()) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve {self.name} not ready after {timeout}s:\n{self._tail()}")
            time.sleep(0.05)  # between readiness probes, not a synchronisation

    def kill(self) -> None:
        """SIGKILL: a replica that dies, with no chance to send what it buffered."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Pipeline:
    agent: Collector
    balancer: Collector
    samplers: list[Collector]
    serves: list[Serve]
    backends: list[OtlpReceiver]  # backends[i] receives what samplers[i] kept

    @property
    def agent_traces_url(self) -> str:
        return f"http://127.0.0.1:{self.agent.port(HTTP)}/v1/traces"

    def total(self, name: str, collectors: Optional[list[Collector]] = None, **labels: str) -> float:
        return sum(c.metric(name, **labels) for c in (collectors or self.samplers))

    def logs(self) -> str:
        parts = [f"--- {c.name}\n{c.log_tail(15)}" for c in (self.agent, self.balancer, *self.samplers)]
        return "\n".join(parts)


@contextmanager
def pipeline(binary: Path, workdir: Path, dsn: str, *, baseline_percent: int, replicas: int = 2) -> Iterator[Pipeline]:
    """Start the whole path, downstream first (each part waits for its health check); stop it after."""
    with ExitStack() as stack:
        overlay = workdir / "backend-overlay.yaml"
        overlay.write_text(BACKEND_OVERLAY)
        pki = make_pki(workdir / "pki")
        backends = [stack.enter_context(OtlpReceiver()) for _ in range(replicas)]
        serves = []
        for index in range(replicas):
            serve = Serve(dsn, workdir, f"serve-{'AB'[index]}", pki)
            stack.callback(serve.stop)
            serves.append(serve.start())
        samplers = []
        for index in range(replicas):
            sampler = Collector(
                binary,
                [CONFIG_DIR / "gateway-tier2-sampler.yaml", overlay],
                workdir,
                name=f"sampler-{'AB'[index]}",
                listen=[GRPC],
                sets={
                    "processors::tail_sampling::decision_wait": "1s",
                    # After 3 s of retries towards a dead serve, the exporter gives up and counts the loss.
                    "exporters::otlphttp/bridge::retry_on_failure::initial_interval": "500ms",
                    "exporters::otlphttp/bridge::retry_on_failure::max_interval": "1s",
                    "exporters::otlphttp/bridge::retry_on_failure::max_elapsed_time": "3s",
                },
                env={
                    "BASELINE_SAMPLING_PERCENTAGE": str(baseline_percent),
                    "BRIDGE_SERVE_TRACES_ENDPOINT": serves[index].traces_url,
                    "BRIDGE_SERVE_LOGS_ENDPOINT": serves[index].traces_url.replace("/v1/traces", "/v1/logs"),
                    "BRIDGE_SERVE_TOKEN": SERVE_TOKEN,
                    "BRIDGE_SERVE_CA_FILE": str(pki.ca),
                    "BRIDGE_SERVE_CLIENT_CERT_FILE": str(pki.client_cert),
                    "BRIDGE_SERVE_CLIENT_KEY_FILE": str(pki.client_key),
                    "TEST_BACKEND_TRACES_ENDPOINT": backends[index].endpoint,
                },
            )
            samplers.append(stack.enter_context(sampler))
        hostnames = ", ".join(f"127.0.0.1:{s.port(GRPC)}" for s in samplers)
        balancer = Collector(
            binary,
            [CONFIG_DIR / "gateway-tier1-loadbalancer.yaml"],
            workdir,
            name="tier1",
            listen=[GRPC, HTTP],
            sets={
                "exporters::loadbalancing::resolver::dns::enabled": "false",
                "exporters::loadbalancing::resolver::static::hostnames": f"[{hostnames}]",
            },
        )
        stack.enter_context(balancer)
        agent = Collector(
            binary,
            [CONFIG_DIR / "agent.yaml"],
            workdir,
            name="agent",
            listen=[GRPC, HTTP],
            env={"GATEWAY_ENDPOINT": f"127.0.0.1:{balancer.port(GRPC)}"},
        )
        stack.enter_context(agent)
        yield Pipeline(agent, balancer, samplers, serves, backends)
