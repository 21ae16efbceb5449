"""Other runtimes' OpenTelemetry SDKs report exceptions as log records to ``serve``'s ``/v1/logs``:
OpenTelemetry JS from npm, and the OpenTelemetry Java agent from Maven Central (java.util.logging captured
by the agent). Errors are judged by Relay's normalizer (the Sentry receiver) and stored by a real Bugsink.

Both runtimes are installed once into a cache (``~/.cache/otel-sentry-bridge``); a test skips, saying why,
only when the runtime or its registry is not there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.httpserver import RecordingServer, Reply, Request
from tests.peers.bugsink import Bugsink
from tests.peers.sentry import SentryReceiver
from tests.serve_support import serving_app

DATA = Path(__file__).parent / "data" / "serve"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otel-sentry-bridge"
NODE_LOGS_PACKAGES = (  # one release set of OpenTelemetry JS (the 0.223 experimental line pairs with 2.12)
    "@opentelemetry/api@1.9.0",
    "@opentelemetry/api-logs@0.223.1",
    "@opentelemetry/sdk-logs@0.223.1",
    "@opentelemetry/exporter-logs-otlp-proto@0.223.1",
    "@opentelemetry/exporter-logs-otlp-http@0.223.1",
    "@opentelemetry/sdk-trace-base@2.12.1",
)
JAVA_AGENT_VERSION = "2.33.1"
JAVA_AGENT_URL = (
    "https://repo1.maven.org/maven2/io/opentelemetry/javaagent/opentelemetry-javaagent/"
    f"{JAVA_AGENT_VERSION}/opentelemetry-javaagent-{JAVA_AGENT_VERSION}.jar"
)


def node_logs_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the OpenTelemetry JS logs test")
    prefix = CACHE / "node-otel-logs"
    stamp = prefix / "installed.txt"
    wanted = "\n".join(NODE_LOGS_PACKAGES)
    if not stamp.exists() or stamp.read_text() != wanted:
        prefix.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--save-exact"]
        try:
            result = subprocess.run([*command, *NODE_LOGS_PACKAGES], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of OpenTelemetry JS timed out (is the npm registry reachable?)")
        if result.returncode != 0:
            pytest.skip(f"npm install of OpenTelemetry JS failed (registry unreachable?): {result.stderr[-300:]}")
        stamp.write_text(wanted)
    return prefix / "node_modules"


def java_agent() -> Path:
    """The OpenTelemetry Java agent from Maven Central, checked against its published SHA-1, cached."""
    if shutil.which("java") is None:
        pytest.skip("java is needed for the OpenTelemetry Java agent test (scripts/system-deps.sh installs it)")
    jar = CACHE / "java-agent" / f"opentelemetry-javaagent-{JAVA_AGENT_VERSION}.jar"
    if jar.exists():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(JAVA_AGENT_URL + ".sha1", timeout=30) as response:
            expected = response.read().decode().split()[0]
        with urllib.request.urlopen(JAVA_AGENT_URL, timeout=300) as response:
            content = response.read()
    except OSError as exc:
        pytest.skip(f"the OpenTelemetry Java agent could not be downloaded from Maven Central: {exc}")
    assert hashlib.sha1(content).hexdigest() == expected, "the Java agent does not match Maven Central's SHA-1"
    partial = jar.with_suffix(".part")
    partial.write_bytes(content)
    partial.replace(jar)
    return jar


@pytest.mark.parametrize("fmt", ["proto", "json"])
def test_opentelemetry_js_exception_record_to_serve(sentry_receiver: SentryReceiver, fmt: str) -> None:
    modules = node_logs_modules()
    with serving_app(sentry_receiver.dsn) as (url, app):
        result = subprocess.run(
            ["node", str(DATA / "node_logs.js"), f"{url}/v1/logs", fmt, "node-shop"],
            env={**os.environ, "NODE_PATH": str(modules)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        [error] = sentry_receiver.wait_for_items("event", 1)
        health = app.logs.health()
    assert error["contexts"]["trace"]["trace_id"] == summary["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == summary["span_id"]
    assert (error["platform"], error["environment"]) == ("node", "node-test")
    newest = error["exception"]["values"][-1]
    assert (newest["type"], newest["value"]) == ("TypeError", "cannot charge 42: card declined")
    assert newest["stacktrace"]["frames"][-1]["function"] == "chargeCard"
    assert health["records_without_exception_dropped"] == 1
    sentry_receiver.assert_all_valid()


@dataclass
class JavaRun:
    stack: str  # the stack trace the service logged, as Java printed it
    exports: list[Request]  # the agent's own OTLP requests (/v1/traces and /v1/logs), byte for byte


@pytest.fixture(scope="module")
def java_run() -> JavaRun:
    """JavaLogs under the Java agent, once per module (the agent takes ~5-30 s to start on 2 busy cores): its
    OTLP exports are recorded, then posted to ``serve`` unchanged by each test."""
    agent = java_agent()
    # Compiled first: the agent does not start under Java's source launcher (a "JDK tool" to it).
    source = DATA / "JavaLogs.java"
    classes = CACHE / "java-agent" / ("classes-" + hashlib.sha1(source.read_bytes()).hexdigest()[:12])
    if not (classes / "JavaLogs.class").exists():
        if shutil.which("javac") is None:
            pytest.skip("javac is needed to compile the Java service (scripts/system-deps.sh installs a JDK)")
        subprocess.run(["javac", "-d", str(classes), str(source)], check=True, capture_output=True, timeout=120)
    with RecordingServer(lambda request: Reply(200, {"Content-Type": "application/x-protobuf"})) as collector:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAVA_TOOL"))}
        env.update(
            {
                "OTEL_SERVICE_NAME": "java-shop",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=java-test,service.version=9.1",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_INSTRUMENTATION_METHODS_INCLUDE": "JavaLogs[handle]",
            }
        )
        command = ["java", f"-javaagent:{agent}", "-cp", str(classes), "JavaLogs"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-2000:]
        exports = list(collector.requests)  # the agent flushes both signals before the JVM exits
    assert {request.path for request in exports} == {"/v1/traces", "/v1/logs"}
    return JavaRun(result.stdout.strip().splitlines()[-1].replace("\\n", "\n"), exports)


def replay(url: str, exports: list[Request]) -> None:
    """Traces first (then the error can be named after its transaction, which a test asserts)."""
    for export in sorted(exports, key=lambda request: request.path != "/v1/traces"):
        headers = {
            name: export.headers[name] for name in ("content-type", "content-encoding") if name in export.headers
        }
        request = urllib.request.Request(url + export.path, data=export.body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def test_the_java_agent_exception_record_to_serve(sentry_receiver: SentryReceiver, java_run: JavaRun) -> None:
    with serving_app(sentry_receiver.dsn) as (url, app):
        replay(url, java_run.exports)
        [error] = sentry_receiver.wait_for_items("event", 1)
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)  # the agent's span for handle()
        health = app.logs.health()
    assert "chargeCard" in java_run.stack
    assert (error["platform"], error["environment"], error["release"]) == ("java", "java-test", "9.1")
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == transaction["contexts"]["trace"]["span_id"]
    assert error["transaction"] == transaction["transaction"] == "JavaLogs.handle"
    assert error["logentry"] == {"formatted": "checkout failed"}  # the log message beside the exception
    newest = error["exception"]["values"][-1]
    assert (newest.get("module"), newest["type"]) == ("java.lang", "IllegalStateException")
    assert newest["value"] == "cannot charge 42: card declined"
    functions = [frame["function"] for frame in newest["stacktrace"]["frames"]]
    assert functions[-2:] == ["JavaLogs.handle", "JavaLogs.chargeCard"]
    assert health["records_without_exception_dropped"] == 1  # "charging"
    sentry_receiver.assert_all_valid()


def test_java_and_js_errors_land_in_a_real_bugsink_with_frames(bugsink: Bugsink, java_run: JavaRun) -> None:
    dsn, project_id = bugsink.new_project("serve-logs-runtimes")
    modules = node_logs_modules()
    with serving_app(dsn) as (url, _):
        replay(url, java_run.exports)
        subprocess.run(
            ["node", str(DATA / "node_logs.js"), f"{url}/v1/logs", "proto", "node-shop"],
            env={**os.environ, "NODE_PATH": str(modules)},
            check=True,
            capture_output=True,
            timeout=60,
        )
        stored = bugsink.wait_for_events(2, project_id=project_id)
    by_platform = {event["data"]["platform"]: event["data"]["exception"]["values"][-1] for event in stored}
    assert by_platform["java"]["stacktrace"]["frames"][-1]["function"] == "JavaLogs.chargeCard"
    assert by_platform["node"]["stacktrace"]["frames"][-1]["function"] == "chargeCard"
