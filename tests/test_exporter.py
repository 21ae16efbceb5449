"""``SentrySpanExporter`` in a hand-built OpenTelemetry setup (the SDK's batch processor, a real receiver)."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from bridge.exporter import SentrySpanExporter
from tests.peers.sentry import SentryReceiver


def test_force_flush_of_the_batch_processor_delivers_to_sentry(
    monkeypatch: pytest.MonkeyPatch, sentry_receiver: SentryReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SENTRY_DSN", sentry_receiver.dsn)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # the bridge refuses it; not this exporter's concern
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp_proto_grpc,sentry")  # names for the configurator, not for us
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.1")
    with caplog.at_level(logging.WARNING, logger="bridge"):
        exporter = SentrySpanExporter(environment="hand-built")
    assert exporter.error is None
    assert "SENTRY_TRACES_SAMPLE_RATE has no effect" in caplog.text
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("hand-built")
    attributes = {"http.request.method": "POST", "url.path": "/orders", "http.route": "/orders"}
    with tracer.start_as_current_span("POST /orders", kind=trace_api.SpanKind.SERVER, attributes=attributes) as span:
        with tracer.start_as_current_span("db"):
            pass
        span.record_exception(KeyError("sku"))
    assert provider.force_flush(10_000)
    (transaction,) = sentry_receiver.transactions()  # there already: the export flushed the leg
    (error,) = sentry_receiver.events()
    assert transaction["transaction"] == "POST /orders" and transaction["environment"] == "hand-built"
    assert len(transaction["spans"]) == 1
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    dsc = sentry_receiver.received[0].request.data.partition(b"\n")[0].decode()
    assert '"sample_rate":"1.0"' in dsc  # the SDK's default sampler decided, not SENTRY_TRACES_SAMPLE_RATE
    provider.shutdown()


def test_without_a_dsn_it_is_off_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="bridge"):
        exporter = SentrySpanExporter()
    assert exporter.error is not None and "SENTRY_DSN" in str(exporter.error)
    assert "the 'sentry' traces exporter is off" in caplog.text
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
    exporter.shutdown()
