"""``serve`` throughput on one core, and memory per 10 000 buffered spans.

    python -m benchmarks.serve_throughput [--requests 40] [--traces 50] [--repeat 3]

Pre-encoded OTLP bodies (protobuf, gzip) from the OpenTelemetry SDK's own encoder, each with ``--traces``
traces of 10 spans (a SERVER root, db and http children; one trace in ten records an exception), go
through the WSGI app in this process. Reported (median of ``--repeat`` runs, CPU time of the process):

- ``decode``: HTTP body → gunzip → protobuf → SDK ``ReadableSpan`` (a sink that keeps nothing);
- ``decode+convert``: the same, then the Sentry leg of ``serve`` (assembler, converter, envelope,
  serialization, gzip), with a transport that does its work inline and skips only the HTTP POST;
- ``buffered``: ``tracemalloc`` memory of 10 000 decoded children waiting for their roots, per span and per
  10 000, next to the estimate the buffer bound uses (``ReceivedSpan.weight``).
All in one thread: CPU time is one core's.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import io
import os
import random
import statistics
import sys
import time
import tracemalloc
import zlib
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from opentelemetry import trace as trace_api  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from bridge.receiver.app import ReceiverApp  # noqa: E402
from bridge.receiver.decode import decode_protobuf  # noqa: E402
from bridge.receiver.routes import Routes  # noqa: E402
from bridge.receiver.sink import Accepted, SentrySink  # noqa: E402
from bridge.sentry.dsn import Dsn  # noqa: E402

DSN = "http://publickey@127.0.0.1:9/1"


def make_spans(traces: int, seed: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "shop", "service.version": "1.0", "deployment.environment.name": "bench"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench", "1.0")
    rng = random.Random(seed)
    for number in range(traces):
        attributes = {
            "http.request.method": "GET",
            "http.route": "/orders/{id}",
            "url.path": f"/orders/{rng.randrange(10**6)}",
            "http.response.status_code": 200,
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) bench",
        }
        with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes) as root:
            for index in range(6):
                with tracer.start_as_current_span(
                    "SELECT",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "db.system.name": "postgresql",
                        "db.query.text": f"SELECT * FROM t{index} WHERE id = $1",
                    },
                ):
                    pass
            with tracer.start_as_current_span("render"), tracer.start_as_current_span("template"):
                pass
            with tracer.start_as_current_span(
                "GET", kind=SpanKind.CLIENT, attributes={"http.request.method": "GET", "url.full": "http://inventory/x"}
            ):
                pass
            if number % 10 == 0:
                try:
                    {}["missing"]  # noqa: B018 - a real exception with a real traceback
                except KeyError as exc:
                    root.record_exception(exc)
                    root.set_status(trace_api.Status(StatusCode.ERROR))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def bodies(requests: int, traces: int) -> tuple[list[bytes], int]:
    out, spans = [], 0
    for seed in range(requests):
        batch = make_spans(traces, seed)
        spans += len(batch)
        out.append(gzip.compress(encode_spans(batch).SerializeToString(), 6))
    return out, spans


class NullSink:
    draining = False

    def accept(self, spans: Any) -> Accepted:
        return Accepted()

    def health(self) -> dict[str, Any]:
        return {}


class InlineTransport:
    """The transport's interface, doing its work in the caller: build, serialize, gzip; no HTTP."""

    queue_size = 1 << 30
    pending = 0

    def __init__(self) -> None:
        self.envelopes = 0
        self.bytes = 0

    def submit(self, category: str, build: Any) -> bool:
        envelope = build()
        if envelope is not None:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            data = compressor.compress(envelope.serialize()) + compressor.flush()
            self.envelopes += 1
            self.bytes += len(data)
        return True

    def record_lost(self, reason: str, category: str, quantity: int = 1) -> None:
        pass

    def is_rate_limited(self, category: str) -> bool:
        return False

    def flush(self, timeout: float) -> bool:
        return True

    def shutdown(self, timeout: float = 0) -> None:
        pass


def converting_sink() -> tuple[SentrySink, list[InlineTransport]]:
    from bridge.config import Options
    from bridge.receiver.legs import LegDestination
    from bridge.sentry.assemble import Assembler
    from bridge.sentry.leg import SentryLeg

    transports: list[InlineTransport] = []

    def factory(dsn: Dsn, spans: int, size: Any) -> Any:
        transport = InlineTransport()
        transports.append(transport)
        options = Options.resolve({"dsn": dsn.raw, "exporters": ("sentry",)}, {})
        assembler = Assembler(max_buffered=spans, max_buffered_bytes=size, weigh=lambda s: s.weight)
        leg = SentryLeg(options, Resource({}), transport=transport, assembler=assembler, in_process=False)  # type: ignore[arg-type]
        return LegDestination(leg, transport)  # type: ignore[arg-type]

    return SentrySink(Routes({}, Dsn.parse(DSN)), factory=factory), transports


def post_all(app: ReceiverApp, data: list[bytes]) -> None:
    for body in data:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v1/traces",
            "CONTENT_TYPE": "application/x-protobuf",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": "gzip",
            "wsgi.input": io.BytesIO(body),
        }
        status: list[str] = []
        b"".join(app(environ, lambda s, h, e=None, seen=status: seen.append(s)))
        assert status[0].startswith("200"), status


def timed(run: Any, repeat: int) -> float:
    results = []
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        run()
        results.append(time.process_time() - start)
    return statistics.median(results)


def memory_per_buffered(count: int = 10_000) -> tuple[float, float]:
    """(measured bytes, estimated bytes) per buffered span."""
    spans = [s for s in make_spans(count // 9 + 1, 99) if s.parent is not None][:count]
    body = encode_spans(spans).SerializeToString()
    from bridge.sentry.assemble import Assembler

    assembler = Assembler(max_buffered=10**7, ttl=3600, weigh=lambda s: s.weight)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    decoded = decode_protobuf(body).spans
    for span in decoded:
        assembler.add(span)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert assembler.buffered == len(decoded) == count, (assembler.buffered, len(decoded))
    estimate = assembler.buffered_bytes / count
    return (after - before) / count, estimate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--traces", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="keep them in results/serve.json; redraw charts")
    args = parser.parse_args()
    figures: dict[str, Any] = {"requests": args.requests, "traces": args.traces, "repeat": args.repeat}
    data, spans = bodies(args.requests, args.traces)
    size = sum(len(b) for b in data) / len(data)
    print(f"{len(data)} requests of {spans // len(data)} spans ({size / 1024:.0f} KiB gzip each), {spans} spans")

    seconds = timed(lambda: post_all(ReceiverApp(NullSink()), data), args.repeat)
    print(f"decode:          {spans / seconds:10,.0f} spans/s   ({seconds * 1e6 / spans:.1f} us/span)")
    figures["decode_spans_s"] = spans / seconds
    try:
        converting_sink()
    except ImportError as exc:
        print(f"decode+convert:  skipped ({exc})")
    else:
        outcome: dict[str, Any] = {}

        def convert_run() -> None:
            sink, transports = converting_sink()
            post_all(ReceiverApp(sink), data)
            sink.shutdown(1)
            outcome["envelopes"] = sum(t.envelopes for t in transports)
            outcome["bytes"] = sum(t.bytes for t in transports)

        seconds = timed(convert_run, args.repeat)
        figures["convert_spans_s"] = spans / seconds
        print(
            f"decode+convert:  {spans / seconds:10,.0f} spans/s   ({seconds * 1e6 / spans:.1f} us/span; "
            f"{outcome['envelopes']} envelopes, {outcome['bytes'] / outcome['envelopes']:.0f} B gzip each)"
        )
    measured, estimate = memory_per_buffered()
    print(
        f"buffered:        {measured:10,.0f} B/span measured, {measured * 10_000 / 2**20:.1f} MiB per 10 000 spans "
        f"(the bound's estimate: {estimate:,.0f} B/span)"
    )
    figures["buffered_bytes_per_span"] = measured
    if args.save:
        import json

        from benchmarks import charts

        charts.RESULTS.mkdir(parents=True, exist_ok=True)
        (charts.RESULTS / "serve.json").write_text(json.dumps(figures, indent=2) + "\n")
        charts.render_all()


if __name__ == "__main__":
    main()
