"""CPU per span of each tier of the collector gateway, with ``serve`` behind it, on loopback.

    python -m benchmarks.collector_pipeline [--traces 4000] [--spans 10] [--errors 2] [--baseline 10]

The two-tier path of ``tests/collector_support.py`` (agent → tier 1 → two samplers → two ``serve``, and
a trace backend per sampler), built from collector-config/ with the collector ``scripts/otelcol.sh``
builds; ``serve`` sends to the counting sink of ``benchmarks/sink.py``. OTLP/HTTP requests of 50 traces
(``--spans`` spans each: a SERVER root and its children; ``--errors`` percent of the traces fail with an
exception event) go to the agent as fast as it answers. When every trace is decided and every kept
trace is a transaction at the sink, the CPU time each process used (``/proc``) is divided by the spans
it handled: all spans for the collectors, the kept spans for ``serve``. All processes share this
machine's cores, so wall-clock rates are a floor; CPU per span is the figure to size replicas with.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

from benchmarks.sink import SinkProcess  # noqa: E402
from tests.collector_support import HTTP, Pipeline, pipeline  # noqa: E402
from tests.peers.otelcol import collector_binary, wait_until  # noqa: E402

DECIDED = "otelcol_processor_tail_sampling_global_count_traces_sampled"
TRACES_PER_REQUEST = 50
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _attr(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def request_body(traces: int, spans: int, failing: set[int], first: int) -> bytes:
    """One export request: ``traces`` traces of ``spans`` spans; those numbered in ``failing`` fail."""
    message = ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    resource_spans.resource.attributes.append(_attr("service.name", "bench"))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "benchmarks.collector_pipeline"
    now = time.time_ns()
    for number in range(first, first + traces):
        trace_id, root_id = os.urandom(16), os.urandom(8)
        root = scope.spans.add(trace_id=trace_id, span_id=root_id, name="GET /orders/{id}", kind=Span.SPAN_KIND_SERVER)
        root.start_time_unix_nano, root.end_time_unix_nano = now, now + 20_000_000
        root.attributes.extend([_attr("http.route", "/orders/{id}"), _attr("http.response.status_code", 200)])
        if number in failing:
            root.status.code = Status.STATUS_CODE_ERROR
            event = root.events.add(name="exception", time_unix_nano=now + 10_000_000)
            event.attributes.extend([_attr("exception.type", "KeyError"), _attr("exception.message", str(number))])
        for child in range(spans - 1):
            span = scope.spans.add(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id)
            span.name, span.kind = f"SELECT orders {child}", Span.SPAN_KIND_CLIENT
            span.start_time_unix_nano, span.end_time_unix_nano = now + 1_000_000, now + 2_000_000
            span.attributes.append(_attr("db.system.name", "postgresql"))
    body: bytes = message.SerializeToString()
    return body


def send(line: Pipeline, bodies: list[bytes]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", line.agent.port(HTTP), timeout=30)
    for body in bodies:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"the agent answered {answer.status}")
    connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=4000)
    parser.add_argument("--spans", type=int, default=10, help="spans per trace")
    parser.add_argument("--errors", type=float, default=2.0, help="percent of traces that fail")
    parser.add_argument("--baseline", type=int, default=10, help="BASELINE_SAMPLING_PERCENTAGE")
    args = parser.parse_args(argv)

    binary = collector_binary()
    every = max(1, round(100 / args.errors)) if args.errors > 0 else 0
    failing = set(range(0, args.traces, every)) if every else set()
    bodies = [
        request_body(min(TRACES_PER_REQUEST, args.traces - first), args.spans, failing, first)
        for first in range(0, args.traces, TRACES_PER_REQUEST)
    ]
    total_spans = args.traces * args.spans
    with tempfile.TemporaryDirectory() as workdir, SinkProcess() as sink:
        with pipeline(binary, Path(workdir), sink.dsn, baseline_percent=args.baseline) as line:
            processes: dict[str, list[Any]] = {
                "agent": [line.agent],
                "tier 1": [line.balancer],
                "samplers": line.samplers,
                "serve": line.serves,
            }
            pids = {name: [p.process.pid for p in group if p.process] for name, group in processes.items()}
            before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
            started = time.monotonic()
            send(line, bodies)
            sent_seconds = time.monotonic() - started
            wait_until(lambda: line.total(DECIDED) >= args.traces, 300, lambda: f"{line.total(DECIDED)} decided")
            kept = int(line.total(DECIDED, sampled="true"))
            wait_until(
                lambda: sink.counts().get("sentry_transactions", 0) >= kept,
                300,
                lambda: f"{sink.counts()} at the sink, {kept} traces kept",
            )
            done_seconds = time.monotonic() - started
            after = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
            counts = sink.counts()

    kept_spans = kept * args.spans
    print(f"{args.traces} traces of {args.spans} spans ({total_spans} spans), {len(failing)} failing, baseline")
    transactions, errors = counts.get("sentry_transactions", 0), counts.get("sentry_errors", 0)
    print(f"{args.baseline}%: {kept} traces kept ({kept_spans} spans); at the sink {transactions}")
    print(f"transactions and {errors} errors.")
    print(f"sent in {sent_seconds:.1f}s ({total_spans / sent_seconds:,.0f} spans/s into the agent); all at the sink")
    print(f"after {done_seconds:.1f}s (includes the 1 s decision_wait)")
    print()
    print("| process | CPU s | spans handled | CPU µs/span | spans/s per core |")
    print("|---|---|---|---|---|")
    for name in processes:
        used = after[name] - before[name]
        handled = kept_spans if name == "serve" else total_spans
        per_span = used * 1e6 / handled if handled else 0.0
        rate = f"{1e6 / per_span:,.0f}" if per_span else "-"
        print(f"| {name} ({len(pids[name])}) | {used:.2f} | {handled} | {per_span:.1f} | {rate} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
