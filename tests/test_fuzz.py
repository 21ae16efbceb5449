"""The decoders under a coverage-guided fuzzer (atheris), for a bounded time, and the crashes it found.

Each target (``tests/fuzz/targets.py``: OTLP JSON, OTLP protobuf, protobuf on to Sentry events,
gzip/deflate, the six stack-trace parsers) runs ``FUZZ_SECONDS`` seconds
(``OTEL_SENTRY_BRIDGE_FUZZ_SECONDS``, default 6) in its own process, from seeds made here from real SDK
encodings and real stack traces, with libFuzzer's bounds:
``-timeout`` seconds per input (a hang is a finding), ``-rss_limit_mb`` (a memory blow-up is a finding).
A finding fails the test and its input is left in the test's temporary directory: copy it to
``tests/data/fuzz/<target>/`` where ``test_found_inputs_stay_fixed`` replays it from then on.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import traceback
import zlib
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanKind, StatusCode

from tests.fuzz.targets import TARGETS
from tests.serve_support import encode, finished_spans, to_otlp_json
from tests.stacktrace_samples import DATA as STACKTRACES

ROOT = Path(__file__).resolve().parent.parent
FOUND = Path(__file__).parent / "data" / "fuzz"
FUZZ_SECONDS = int(os.environ.get("OTEL_SENTRY_BRIDGE_FUZZ_SECONDS", "6"))
SAMPLES_BY_LANGUAGE = {  # hand-written traces in each runtime's format (tests/data/stacktraces)
    "go": ["go_http.txt", "go_otel_stack.txt", "go_panic.txt"],
    "dotnet": ["dotnet_console.txt", "dotnet_inner.txt"],
    "ruby": ["ruby27_bottom.txt", "ruby33_multiline.txt", "ruby34_cause.txt"],
}

JAVA_TRACE = """\
java.lang.RuntimeException: request failed
\tat com.example.Service.handle(Service.java:21)
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
\tSuppressed: java.lang.UnsupportedOperationException: while closing
\t\tat com.example.Service.close(Service.java:40)
Caused by: java.lang.IllegalStateException: service failed
\tat com.example.Repository.load(Repository.java:11)
\tat Crash.main(Native Method)
\t... 2 more
"""
NODE_TRACE = """\
Error: request failed
    at handle (/srv/app/server.js:12:11)
    at async Promise.all (index 0)
    at Layer.handle [as handle_request] (/srv/app/node_modules/express/lib/router/layer.js:95:5)
    at new Order (file:///srv/app/order.mjs:3:9)
    at <anonymous>
    ... 4 lines matching cause stack trace ...
  [cause]: TypeError: cannot read properties of undefined (reading 'id')
      at load (/srv/app/db.js:7:20) {
    code: 'E_LOAD'
  }
"""


def _nested_failure() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        raise RuntimeError("while handling") from exc


def python_traceback() -> str:
    try:
        _nested_failure()
    except RuntimeError:
        return traceback.format_exc()
    raise AssertionError("unreachable")


def rich_request(tracer: trace_api.Tracer) -> None:
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={"a": [1, 2], "b": 1.5}) as root:
        root.add_event("exception", {"exception.type": "E", "exception.stacktrace": python_traceback()})
        root.set_status(trace_api.Status(StatusCode.ERROR, "bad"))
        with tracer.start_as_current_span("child", links=[trace_api.Link(root.get_span_context(), {"k": "v"})]):
            pass


def seeds(target: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    request = encode(finished_spans(rich_request, {"service.name": "shop", "service.version": "1"}))
    wire = bytes(request.SerializeToString())
    found: list[bytes] = []
    if target == "json":
        found = [json.dumps(to_otlp_json(request)).encode(), b'{"resourceSpans": []}', b"{}"]
    elif target in ("protobuf", "convert"):
        found = [wire, b""]
    elif target == "gzip":
        found = [gzip.compress(wire), zlib.compress(wire), gzip.compress(b"a") * 2, gzip.compress(b"\0" * 4096)]
    elif target == "python":
        found = [python_traceback().encode()]
    elif target in ("java", "node"):
        found = [(JAVA_TRACE if target == "java" else NODE_TRACE).encode()]
    else:
        found = [(STACKTRACES / name).read_bytes().partition(b"----\n")[2] for name in SAMPLES_BY_LANGUAGE[target]]
    for number, data in enumerate(found):
        (directory / f"seed-{number}").write_bytes(data)
    return directory


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="the 'fuzz' extra (atheris) is not installed")
    corpus = seeds(target, tmp_path / "corpus")
    artifacts = tmp_path / "findings"
    artifacts.mkdir()
    command = [
        sys.executable, "-m", "tests.fuzz", target, str(corpus),
        f"-max_total_time={FUZZ_SECONDS}", "-timeout=10", "-rss_limit_mb=1536", "-max_len=16384",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=FUZZ_SECONDS + 120)
    findings = sorted(path.name for path in artifacts.iterdir())
    tail = "\n".join(result.stderr.splitlines()[-40:])
    assert result.returncode == 0 and not findings, f"{target}: findings {findings} in {artifacts}\n{tail}"
    assert "Done " in result.stderr  # it really ran, and to its time limit


def found_inputs() -> list[tuple[str, Path]]:
    if not FOUND.is_dir():
        return []
    return [(d.name, f) for d in sorted(FOUND.iterdir()) if d.is_dir() for f in sorted(d.iterdir()) if f.is_file()]


@pytest.mark.parametrize(("target", "path"), found_inputs(), ids=[f"{t}/{p.name}" for t, p in found_inputs()])
def test_found_inputs_stay_fixed(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())  # raises on a finding, as under the fuzzer
