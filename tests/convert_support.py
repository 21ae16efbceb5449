"""Real spans for the converter's tests: the OpenTelemetry SDK, OpenTelemetry's WSGI middleware driven by
werkzeug's test client.

Every event a test makes goes through ``sent`` → ``Envelope.for_event(...).serialize()`` →
``tests.judges.assert_valid_envelope`` (Relay's normalizer).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.instrumentation import _semconv
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.test import Client

from bridge.sentry.convert import ConvertOptions, dynamic_sampling_context
from bridge.sentry.envelope import Envelope
from tests.judges import assert_valid_envelope

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


class Recorder:
    """A TracerProvider whose finished spans are kept in memory."""

    def __init__(self, resource: Mapping[str, Any] | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(dict(resource or {})))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests.convert")

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def root(self) -> ReadableSpan:
        roots = [span for span in self.spans if span.parent is None or span.parent.is_remote]
        assert len(roots) == 1, roots
        return roots[0]

    def children(self, root: ReadableSpan) -> list[ReadableSpan]:
        return [span for span in self.spans if span is not root]


@contextmanager
def semconv_mode(mode: str | None) -> Iterator[None]:
    """Make OpenTelemetry's instrumentations read OTEL_SEMCONV_STABILITY_OPT_IN afresh (it is read once per
    process): ``None`` (old conventions), ``"http"`` (new) or ``"http/dup"`` (both)."""
    import os

    stability = _semconv._OpenTelemetrySemanticConventionStability
    saved_env = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN")
    saved = (stability._initialized, dict(stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING))
    if mode is None:
        os.environ.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
    else:
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = mode
    stability._initialized = False
    stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = {}
    try:
        stability._initialize()
        yield
    finally:
        if saved_env is None:
            os.environ.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
        else:
            os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = saved_env
        stability._initialized, stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING = saved


def wsgi_client(app: Any, recorder: Recorder, mode: str | None = None) -> Client:
    """werkzeug's test client on ``app`` wrapped by OpenTelemetry's WSGI middleware (semconv ``mode``)."""
    with semconv_mode(mode):
        wrapped = OpenTelemetryMiddleware(app, tracer_provider=recorder.provider)
    return Client(wrapped, use_cookies=False)


def sent(event: dict[str, Any], options: ConvertOptions | None = None, **dsc_args: Any) -> bytes:
    """The envelope the bridge would send for ``event``, judged by Relay; returns its bytes."""
    options = options or ConvertOptions()
    trace_id = int(event["contexts"]["trace"]["trace_id"], 16)
    dsc = dynamic_sampling_context(
        trace_id=trace_id,
        public_key=PUBLIC_KEY,
        options=options,
        transaction=event.get("transaction"),
        sample_rate=dsc_args.pop("sample_rate", 1.0),
        sampled=dsc_args.pop("sampled", True),
        **dsc_args,
    )
    raw = Envelope.for_event(event, dsc).serialize()
    items = assert_valid_envelope(raw)
    assert [kind for kind, _ in items] == ["transaction" if event.get("type") == "transaction" else "event"]
    return raw

