"""How serve's decoders scale with hostile input: time for n and 4n, and peak memory per input byte.

    python -m benchmarks.decoder_scaling [--base N]

For each case (an input built to be expensive: many spans, deep nesting, long lines that almost match
a frame pattern, long cause chains, highly compressible gzip), it times the decoder on inputs of size
n and 4n (best of 5, the garbage collector off) and reports the ratio: about 4 is linear, 16 quadratic, and
the ratio of function calls made (deterministic). Small inputs fit the CPU caches and large ones do not,
so time ratios at small n overstate; run with ``--scale 16`` for steadier ones. tests/test_decoder_scaling.py
asserts the call ratio (under 6), the time ratio of the regex-bound cases generously (under 10), and
peak memory under a bound per input byte.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from bridge.receiver import app as receiver_app
from bridge.receiver.decode import DecodeError, decode_protobuf
from bridge.receiver.otlpjson import decode_json
from bridge.stacktraces.dotnet import parse_dotnet
from bridge.stacktraces.go import parse_go
from bridge.stacktraces.java import parse_java
from bridge.stacktraces.node import parse_node
from bridge.stacktraces.python import parse_python
from bridge.stacktraces.ruby import parse_ruby

__all__ = ["CASES", "Case", "measure", "operations", "peak_bytes"]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], bytes]  # n -> an input of about n units
    run: Callable[[bytes], object]
    base: int  # n such that one run takes a few milliseconds


def _json_spans(n: int) -> bytes:
    span = {"traceId": "0" * 31 + "1", "spanId": "0" * 15 + "1", "name": "s", "startTimeUnixNano": "1",
            "endTimeUnixNano": "2", "attributes": [{"key": "k", "value": {"stringValue": "v"}}]}  # fmt: skip
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span] * n}]}]}).encode()


def _json_nested(n: int) -> bytes:
    value = '{"intValue":"1"}'
    for _ in range(n):
        value = '{"arrayValue":{"values":[' + value + "]}}"
    return ('{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":' + value + "}]}}]}").encode()


def _protobuf_spans(n: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for index in range(n):
        span = spans.add(trace_id=b"\1" * 16, span_id=index.to_bytes(8, "big") or b"\1", name="s")
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return bytes(request.SerializeToString())


def _decode(decoder: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        try:
            return decoder(data)
        except DecodeError:
            return None

    return run


def _gunzip(data: bytes) -> object:
    try:
        return receiver_app.decompress(data, "gzip", 64 << 20)
    except receiver_app._Refused:
        return None


def _text(parser: Callable[[str], object]) -> Callable[[bytes], object]:
    return lambda data: parser(data.decode("utf-8", "replace"))


def _lines(line: str, header: str = "") -> Callable[[int], bytes]:
    return lambda n: (header + line * n).encode()


_PY_FRAME = '  File "/srv/app/m.py", line 1, in f\n    x()\n'
_JAVA_CAUSE = "Caused by: java.lang.Error: y\n\tat a.B.c(B.java:1)\n\t... 3 more\n"
_NODE_CAUSE = "  [cause]: Error: y\n      at g (/srv/b.js:1:2)\n      ... 1 lines matching cause stack trace ...\n"
_DOTNET_END = "   --- End of inner exception stack trace ---\n   at A.B()\n"


def _dotnet_chain(n: int) -> bytes:
    return ("System.Exception: x" + " ---> System.Exception: y" * n + "\n" + _DOTNET_END * n).encode()


CASES: list[Case] = [
    Case("json: many spans", _json_spans, _decode(decode_json), 500),
    Case("json: deep nesting", _json_nested, _decode(decode_json), 60),
    Case("protobuf: many spans", _protobuf_spans, _decode(decode_protobuf), 500),
    Case("gzip: compressible", lambda n: gzip.compress(b"\0" * (n * 1024)), _gunzip, 1024),
    Case("python: frames", _lines(_PY_FRAME, "Traceback (most recent call last):\n"), _text(parse_python), 500),
    Case("python: long near-miss line", lambda n: ('  File "' + "/a" * n * 20 + '", line x').encode(),
         _text(parse_python), 100),
    Case("java: frames", _lines("\tat com.example.A.f(A.java:1)\n", "java.lang.Error: x\n"), _text(parse_java), 500),
    Case("java: cause chain", _lines(_JAVA_CAUSE, "java.lang.Error: x\n\tat a.B.c(B.java:1)\n"), _text(parse_java),
         200),
    Case("java: long near-miss line", lambda n: ("\tat " + "a." * n * 20 + "(").encode(), _text(parse_java), 100),
    Case("node: frames", _lines("    at f (/srv/a.js:1:2)\n", "Error: x\n"), _text(parse_node), 500),
    Case("node: cause chain", _lines(_NODE_CAUSE, "Error: x\n    at f (/srv/a.js:1:2)\n"), _text(parse_node), 200),
    Case("node: long near-miss line", lambda n: ("    at " + "f (" * n * 10).encode(), _text(parse_node), 100),
    Case("go: frames", _lines("main.f()\n\t/srv/main.go:1 +0x1\n", "panic: x\n\ngoroutine 1 [running]:\n"),
         _text(parse_go), 500),
    Case("go: goroutines", _lines("goroutine 2 [chan receive]:\nmain.g(...)\n\t/srv/g.go:2\n\n", "panic: x\n\n"),
         _text(parse_go), 300),
    Case("dotnet: frames", _lines("   at A.B.C() in /src/a.cs:line 1\n", "System.Exception: x\n"),
         _text(parse_dotnet), 500),
    Case("dotnet: inner chain", _dotnet_chain, _text(parse_dotnet), 100),
    Case("ruby: frames", _lines("\tfrom /srv/a.rb:1:in 'f'\n", "/srv/a.rb:1:in 'g': x (E)\n"), _text(parse_ruby), 500),
    Case("ruby: long near-miss line", lambda n: ("/srv/" + "a.rb:1:" * n * 10 + "in").encode(), _text(parse_ruby), 100),
]


def best_time(case: Case, data: bytes, repeat: int = 5) -> float:
    """Best of ``repeat`` runs, with the cyclic garbage collector off (its full collections grow with
    every object alive in the process, which would show up as a decoder's non-linearity)."""
    best = float("inf")
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            case.run(data)
            best = min(best, time.perf_counter() - started)
    finally:
        if enabled:
            gc.enable()
    return best


def measure(case: Case, base: int) -> tuple[float, float]:
    """Seconds for n = base and the ratio of 4n to n (best of 5 each)."""
    small, large = case.make(base), case.make(4 * base)
    case.run(small)  # warm caches and lazy imports
    t_small, t_large = best_time(case, small), best_time(case, large)
    return t_small, t_large / max(t_small, 1e-9)


def operations(case: Case, data: bytes) -> int:
    """Python and C function calls made while decoding ``data``: a count that machine load cannot skew."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        case.run(data)
    finally:
        sys.setprofile(None)
    return count


def peak_bytes(case: Case, data: bytes) -> int:
    """Peak memory Python allocated while decoding ``data``."""
    tracemalloc.start()
    try:
        case.run(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="multiply each case's base size (default 4)")
    arguments = parser.parse_args()
    print("| case | input n (bytes) | ms at n | time 4n/n | calls 4n/n | peak memory / input byte |")
    print("|---|---|---|---|---|---|")
    for case in CASES:
        base = case.base * arguments.scale
        seconds, ratio = measure(case, base)
        data = case.make(base)
        calls = operations(case, case.make(4 * base)) / max(1, operations(case, data))
        peak = peak_bytes(case, data) / len(data)
        print(f"| {case.name} | {len(data)} | {seconds * 1000:.2f} | {ratio:.1f} | {calls:.1f} | {peak:.1f} |")


if __name__ == "__main__":
    main()
