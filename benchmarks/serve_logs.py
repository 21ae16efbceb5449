"""What ``serve`` pays for log records without an exception, and what keeping them would cost.

    python -m benchmarks.serve_logs [--records 20000]

Prints, for OTLP log requests of 500 records built by the real SDK's encoder (a body and four attributes,
like a logging record exported by the bridge's logs leg, all in one trace of 50 records):
- records/s through ``POST /v1/logs`` when they are dropped (decode, classify, count), one thread;
- the memory one decoded record takes if kept for breadcrumbs (tracemalloc, after decoding, before the
  request's objects are released), and what the ~100 breadcrumbs Sentry keeps per event would hold in the
  records of 10 000 live traces (``MAX_TRACES``).
docs/logs.md quotes the figures and the decision they support.
"""

from __future__ import annotations

import argparse
import io
import time
import tracemalloc
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from bridge.receiver.app import ReceiverApp
from bridge.receiver.decode import any_value, attributes
from bridge.receiver.logs import decode_logs
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink

PER_REQUEST = 500


def request_body() -> bytes:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.checkout")
    for index in range(PER_REQUEST):
        span = NonRecordingSpan(SpanContext(1 + index // 50, 1 + index, False, TraceFlags(1)))
        logger.emit(
            severity_number=SeverityNumber.INFO,
            body=f"charging order {index} for customer 4711 in EUR",
            attributes={
                "code.file.path": "/srv/shop/checkout.py",
                "code.function.name": "charge",
                "code.line.number": 42,
                "thread.name": "MainThread",
            },
            context=set_span_in_context(span),
        )
    provider.shutdown()
    return bytes(encode_logs(exporter.get_finished_logs()).SerializeToString())


def post(app: ReceiverApp, body: bytes) -> int:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/logs",
        "CONTENT_TYPE": "application/x-protobuf",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    status: list[str] = []
    b"".join(app(environ, lambda s, h, e=None: status.append(s)))
    return int(status[0].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    body = request_body()
    sink = SentrySink(Routes.load(None, "http://key@127.0.0.1:9/1"), environ={})
    app = ReceiverApp(sink)
    requests = max(1, args.records // PER_REQUEST)
    start = time.perf_counter()
    for _ in range(requests):
        assert post(app, body) == 200
    elapsed = time.perf_counter() - start
    sink.shutdown(1)
    rate = requests * PER_REQUEST / elapsed
    print(f"dropped: {rate:,.0f} records/s ({len(body) / PER_REQUEST:.0f} B/record on the wire)")

    request, _ = decode_logs(body, False)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [
        (bytes(r.trace_id), r.time_unix_nano, r.severity_number, any_value(r.body), attributes(r.attributes))
        for resource_logs in request.resource_logs
        for scope_logs in resource_logs.scope_logs
        for r in scope_logs.log_records
    ]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_record = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / len(kept)
    print(
        f"kept for breadcrumbs: {per_record:,.0f} B/record; 100 per trace x 10 000 traces: "
        f"{per_record * 100 * 10_000 / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
