"""``otel-sentry-bridge check`` for the logs leg: what looks wrong in its settings, and one test log record.

The record is made by the real SDK (LoggerProvider, the bridge's resource, the test trace's ids) and posted
as the OTLP/HTTP log exporter would post it, so that the answer can be told in plain words.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from typing import Optional
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from bridge.config import Options
from bridge.probe import CLIENT, Outcome, _post

__all__ = ["logs_problems", "send_test_log"]


def logs_problems(options: Options, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    opted_in = environ.get("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", "")
    if options.exception_signal != "span" and not options.logs_enabled:
        found.append(
            (
                "warn",
                f"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN={opted_in or options.exception_signal} needs a logs exporter "
                "(OTEL_LOGS_EXPORTER=otlp): without one, exceptions stay span events",
            )
        )
    if "otlp" in options.logs_exporters:
        path = urlsplit(options.logs_endpoint).path.rstrip("/")
        if not path.endswith("/v1/logs"):
            found.append(("warn", f"the OTLP logs endpoint's path {path or '/'!r} does not end with /v1/logs"))
    return found


def send_test_log(options: Options, trace_id: int, timeout: Optional[float] = None) -> Outcome:
    from bridge.setup import build_resource

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=build_resource(options), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    span = NonRecordingSpan(SpanContext(trace_id, 0x1F, False, TraceFlags(TraceFlags.SAMPLED)))
    provider.get_logger("otel-sentry-bridge.check").emit(
        severity_number=SeverityNumber.INFO,
        body="otel-sentry-bridge check: a test log record",
        context=trace_api.set_span_in_context(span),
    )
    provider.shutdown()
    body = encode_logs(exporter.get_finished_logs()).SerializePartialToString()
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": CLIENT, **dict(options.logs_headers)}
    if options.logs_compression == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif options.logs_compression == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    url = options.logs_endpoint
    what = f"OTLP test log record to {url}"
    response, problem = _post(url, body, headers, timeout or options.logs_timeout)
    if response is None:
        return Outcome(what, False, problem)
    if 200 <= response.status < 300:
        try:
            rejected = ExportLogsServiceResponse.FromString(response.body).partial_success.rejected_log_records
        except Exception:
            rejected = 0
        if rejected:
            return Outcome(what, False, f"the collector answered {response.status} but rejected the record")
        return Outcome(what, True, f"the collector accepted it (HTTP {response.status})")
    if response.status == 404:
        return Outcome(what, False, f"the collector answered 404: nothing at {urlsplit(url).path or '/'}")
    return Outcome(what, False, f"the collector answered {response.status}")
