"""bridge.otlp_encode.encode_logs writes OTLP protobuf straight from the SDK's log records: decoded with
opentelemetry-proto it must be the very request OpenTelemetry's own encoder builds (bodies of every kind,
attributes, severities, trace context, event names, dropped counts, resources, scopes), byte for byte."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from bridge.otlp_encode import encode_logs


class Keep(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _records() -> Sequence[ReadWriteLogRecord]:
    keep = Keep()
    provider = LoggerProvider(
        resource=Resource.create({"service.name": "shop", "deployment.environment.name": "test"}, "https://s/1"),
        shutdown_on_exit=False,
    )
    provider.add_log_record_processor(keep)
    other = LoggerProvider(resource=Resource.create({"service.name": "billing"}), shutdown_on_exit=False)
    other.add_log_record_processor(keep)
    sampled = SpanContext(0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, False, TraceFlags(1))
    in_span = trace_api.set_span_in_context(NonRecordingSpan(sampled))
    checkout = provider.get_logger("shop.checkout", "1.2", "https://s/scope", {"scope.kind": "app"})
    plain = provider.get_logger("plain")
    bodies: list[object] = ["charging order-7", "", "héllo ✓ 𝄞", 7, -3, 2.5, True, b"\x00\xff", None,
                            ["a", 1, [True]], {"order": {"id": 7, "lines": ["x"]}, "empty": {}}]  # fmt: skip
    for index, body in enumerate(bodies):
        checkout.emit(
            timestamp=1_700_000_000_000_000_000 + index,
            observed_timestamp=1_700_000_000_100_000_000 + index,
            context=in_span if index % 2 else None,
            severity_number=SeverityNumber.WARN if index % 3 else SeverityNumber.INFO,
            severity_text="WARN" if index % 3 else "INFO",
            body=body,  # type: ignore[arg-type]
            attributes={
                "code.line.number": index,
                "thread.name": "MainThread",
                "ok": index % 2 == 0,
                "ratio": index / 4,
                "tags": ["a", "b"],
                "empty": "",
            },  # fmt: skip
        )
    plain.emit(body="no timestamp, no severity")
    plain.emit(event_name="exception", context=in_span, severity_number=SeverityNumber.ERROR, severity_text="ERROR",
               exception=ValueError("card 4242 declined"))  # fmt: skip
    other.get_logger("billing.invoices").emit(body="another resource", severity_number=SeverityNumber.FATAL)
    limited = LoggerProvider(resource=Resource.create({"service.name": "limited"}), shutdown_on_exit=False)
    limited._log_record_limits = LogRecordLimits(max_attributes=2)
    limited.add_log_record_processor(keep)
    with pytest.warns(UserWarning):
        limited.get_logger("x").emit(body="too many", attributes={"a": 1, "b": 2, "c": 3, "d": 4})
    return keep.records


def test_decodes_to_what_opentelemetrys_encoder_builds() -> None:
    records = _records()
    ours = ExportLogsServiceRequest.FromString(encode_logs(records))
    theirs = sdk_encode_logs(records)
    assert ours == theirs
    decoded = [r for rl in ours.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert len(decoded) == len(records)
    assert [r.dropped_attributes_count for r in decoded if r.dropped_attributes_count] == [2]


def test_the_same_bytes_as_opentelemetrys_serializer() -> None:
    records = _records()
    assert encode_logs(records) == sdk_encode_logs(records).SerializeToString()


def test_a_body_it_cannot_encode_loses_only_that_body(caplog: pytest.LogCaptureFixture) -> None:
    keep = Keep()
    provider = LoggerProvider(resource=Resource.create({"service.name": "x"}), shutdown_on_exit=False)
    provider.add_log_record_processor(keep)
    provider.get_logger("x").emit(body=object(), severity_number=SeverityNumber.INFO)  # type: ignore[arg-type]
    provider.get_logger("x").emit(body="fine")
    decoded = ExportLogsServiceRequest.FromString(encode_logs(keep.records))
    bodies = [r.body for r in decoded.resource_logs[0].scope_logs[0].log_records]
    assert [b.WhichOneof("value") for b in bodies] == [None, "string_value"]
    assert "log record's body of type object" in caplog.text


def test_an_attribute_cached_for_a_span_is_not_reused_in_a_log_record_under_the_wrong_field() -> None:
    """Attributes are numbered differently in a span (9), an event (3) and a log record (6): the encoded
    attribute cache must not hand a span's bytes to a log record (a collector rejects the request)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from bridge.otlp_encode import encode_spans

    spans: list[object] = []

    class KeepSpans(SpanExporter):
        def export(self, batch: object) -> SpanExportResult:
            spans.extend(batch)  # type: ignore[call-overload]
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(KeepSpans()))
    with tracer_provider.get_tracer("t").start_as_current_span("s", attributes={"shared.key": "v"}) as span:
        span.add_event("e", {"shared.key": "v"})
    encoded_spans = encode_spans(spans)  # type: ignore[arg-type]
    assert ExportTraceServiceRequest.FromString(encoded_spans).resource_spans[0].scope_spans[0].spans[0].events[0]
    keep = Keep()
    provider = LoggerProvider(resource=Resource.create({"service.name": "x"}), shutdown_on_exit=False)
    provider.add_log_record_processor(keep)
    provider.get_logger("x").emit(body="b", attributes={"shared.key": "v"})
    assert encode_logs(keep.records) == sdk_encode_logs(keep.records).SerializeToString()
