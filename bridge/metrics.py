"""The metrics leg: HTTP server metrics, recorded as OpenTelemetry's WSGI instrumentation records them, and the
MeterProvider ``init()`` builds to export them over OTLP/HTTP to ``/v1/metrics``.

- :class:`ServerMetrics` holds the instruments of one meter: ``http.server.request.duration`` (histogram,
  seconds, OpenTelemetry's bucket boundaries) under the stable HTTP conventions, ``http.server.duration``
  (milliseconds) under the old ones, ``http.server.active_requests`` under both; the attributes are picked
  by ``opentelemetry-instrumentation-wsgi``'s own helpers, so both instrumentations record the same series.
  A request is active from its start until its span ends (the body sent or closed).
- :class:`OtlpMetricExporter` encodes with OpenTelemetry's encoder and POSTs over one kept-alive connection.
  It is the bridge's own (not the SDK's) for one reason: a collector without a metrics pipeline answers
  404 or 415 on every interval, forever; that costs one warning here, not one per interval.
- :class:`MetricsLeg` is the MeterProvider with its periodic reader; ``flush()``/``shutdown()`` of the
  bridge cover it. In a fork() child the SDK restarts the reader's thread and the exporter drops the
  connection it shares with the parent.
"""

from __future__ import annotations

import gzip
import logging
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from opentelemetry import context as context_api
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.instrumentation._semconv import (
    HTTP_DURATION_HISTOGRAM_BUCKETS_NEW,
    _report_new,
    _report_old,
    _StabilityMode,
)
from opentelemetry.instrumentation.wsgi import _parse_active_request_count_attrs, _parse_duration_attrs
from opentelemetry.metrics import Histogram, Meter, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics import Counter, ObservableCounter, ObservableUpDownCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics import UpDownCounter as SdkUpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.semconv._incubating.metrics.http_metrics import (
    create_http_server_request_body_size,
    create_http_server_response_body_size,
)
from opentelemetry.semconv.metrics import MetricInstruments
from opentelemetry.semconv.metrics.http_metrics import HTTP_SERVER_REQUEST_DURATION

from bridge.config import Options
from bridge.otlp_transport import SocketTransport
from bridge.version import __version__

__all__ = [
    "MetricsLeg",
    "ServerMetrics",
    "RequestMeasure",
    "OtlpMetricExporter",
    "build_metrics_leg",
    "temporality_for",
    "METER_NAME",
    "WSGI_METER_NAME",
    "ASGI_METER_NAME",
]

logger = logging.getLogger(__name__)

# The instrumentation scope of the HTTP server metrics: OpenTelemetry's own instrumentations' names, so
# dashboards and queries filtered by scope keep working when the bridge replaces their middleware.
WSGI_METER_NAME = "opentelemetry.instrumentation.wsgi"
ASGI_METER_NAME = "opentelemetry.instrumentation.asgi"
METER_NAME = WSGI_METER_NAME
USER_AGENT = f"otel-sentry-bridge/{__version__}"
_NO_PIPELINE = (404, 415)  # what a collector answers on /v1/metrics when it has no metrics pipeline


# -- the HTTP server metrics --------------------------------------------------------------------------
@dataclass
class RequestMeasure:
    """One request's measurements so far: when it started, its active-requests attributes, and what the
    response added (status code; ``error.type`` for a 5xx)."""

    start: float  # time.perf_counter()
    active_attributes: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)
    request_size: Optional[int] = None  # the request's Content-Length (ASGI: the body-size histograms)
    response_size: Optional[int] = None  # the response's Content-Length


class ServerMetrics:
    """The HTTP server instruments of one meter, for one semantic-conventions mode."""

    def __init__(self, meter: Meter, mode: _StabilityMode, body_sizes: bool = False) -> None:
        self.mode = mode
        self.duration: Optional[Histogram] = None
        self.duration_old: Optional[Histogram] = None
        # Body sizes from Content-Length, as OpenTelemetry's ASGI middleware records them (its WSGI one
        # does not): ``http.server.{request,response}.body.size``, and the old conventions' ``.size``.
        self.sizes: Optional[tuple[Histogram, Histogram]] = None
        self.sizes_old: Optional[tuple[Histogram, Histogram]] = None
        if body_sizes and _report_new(mode):
            self.sizes = (create_http_server_request_body_size(meter), create_http_server_response_body_size(meter))
        if body_sizes and _report_old(mode):
            self.sizes_old = (
                meter.create_histogram(
                    name=MetricInstruments.HTTP_SERVER_REQUEST_SIZE,
                    unit="By",
                    description="Measures the size of HTTP request messages (compressed).",
                ),
                meter.create_histogram(
                    name=MetricInstruments.HTTP_SERVER_RESPONSE_SIZE,
                    unit="By",
                    description="measures the size of HTTP response messages (compressed).",
                ),
            )
        if _report_new(mode):
            self.duration = meter.create_histogram(
                name=HTTP_SERVER_REQUEST_DURATION,
                unit="s",
                description="Duration of HTTP server requests.",
                explicit_bucket_boundaries_advisory=list(HTTP_DURATION_HISTOGRAM_BUCKETS_NEW),
            )
        if _report_old(mode):
            self.duration_old = meter.create_histogram(
                name=MetricInstruments.HTTP_SERVER_DURATION,
                unit="ms",
                description="Measures the duration of inbound HTTP requests.",
            )
        self.active: UpDownCounter = meter.create_up_down_counter(
            name=MetricInstruments.HTTP_SERVER_ACTIVE_REQUESTS,
            unit="{request}",
            description="Number of active HTTP server requests.",
        )

    @classmethod
    def of(cls, provider: MeterProvider, mode: _StabilityMode, name: str = WSGI_METER_NAME) -> ServerMetrics:
        return cls(provider.get_meter(name, __version__), mode, body_sizes=name == ASGI_METER_NAME)

    def begin(self, request_attributes: Mapping[str, Any]) -> RequestMeasure:
        active = _parse_active_request_count_attrs(request_attributes, self.mode)
        self.active.add(1, active)
        return RequestMeasure(time.perf_counter(), active)

    def finish(
        self,
        measure: RequestMeasure,
        attributes: Mapping[str, Any],
        context: Optional[context_api.Context],
        end_time: Optional[int] = None,
    ) -> None:
        """Record the request's duration with ``attributes`` (the request's, with its route and ``error.type``,
        over what the response added); ``context`` holds its span, for exemplars; ``end_time`` (ns since the
        epoch, as spans take it): when the request ended, if before now."""
        seconds = time.perf_counter() - measure.start
        if end_time is not None:
            seconds -= max(time.time_ns() - end_time, 0) / 1e9  # the time since it ended is not its duration
        seconds = max(seconds, 0.0)
        merged: Any = {**measure.response, **attributes}
        if self.duration is not None:
            new = _parse_duration_attrs(merged, _StabilityMode.HTTP)
            self.duration.record(seconds, new, context=context)
            if self.sizes is not None:
                _record_sizes(self.sizes, measure, new, context)
        if self.duration_old is not None:
            old = _parse_duration_attrs(merged, _StabilityMode.DEFAULT)
            self.duration_old.record(max(round(seconds * 1000), 0), old, context=context)
            if self.sizes_old is not None:
                _record_sizes(self.sizes_old, measure, old, context)
        self.active.add(-1, measure.active_attributes)


def _record_sizes(
    sizes: tuple[Histogram, Histogram], measure: RequestMeasure, attributes: Any, context: Optional[context_api.Context]
) -> None:
    if measure.response_size is not None:
        sizes[1].record(measure.response_size, attributes, context=context)
    if measure.request_size is not None:
        sizes[0].record(measure.request_size, attributes, context=context)


# -- the exporter -------------------------------------------------------------------------------------
def temporality_for(preference: str) -> dict[type, AggregationTemporality]:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE as the OpenTelemetry specification maps it."""
    cumulative, delta = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
    kinds: tuple[type, ...] = (Counter, SdkUpDownCounter, SdkHistogram, ObservableCounter, ObservableUpDownCounter)
    if preference == "delta":
        deltas: tuple[type, ...] = (Counter, SdkHistogram, ObservableCounter)
    elif preference == "lowmemory":
        deltas = (Counter, SdkHistogram)
    else:
        deltas = ()
    return {kind: delta if kind in deltas else cumulative for kind in kinds}


_COMPRESS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}


class OtlpMetricExporter(MetricExporter):
    """OTLP/HTTP protobuf to ``endpoint``; counts exports and failures; warns once for a collector without a
    metrics pipeline, at most once a minute for any other failure."""

    def __init__(
        self,
        endpoint: str,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 10.0,
        compression: str = "none",
        temporality: str = "cumulative",
        warn_interval: float = 60.0,
    ) -> None:
        super().__init__(preferred_temporality=temporality_for(temporality))
        self.endpoint = endpoint
        self.timeout = timeout
        self.compression = compression
        self.exported = 0  # export requests the collector accepted
        self.failed = 0  # export requests that got no 2xx
        self.no_pipeline_warned = False
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
            **({"Content-Encoding": compression} if compression in _COMPRESS else {}),
            **dict(headers or {}),
        }
        self._transport = SocketTransport(endpoint)
        self._warn_interval = warn_interval
        self._last_warning = float("-inf")
        self._closed = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._closed:
            return MetricExportResult.FAILURE
        try:
            body = encode_metrics(metrics_data).SerializeToString()
            compress = _COMPRESS.get(self.compression)
            if compress is not None:
                body = compress(body)
        except Exception:
            logger.warning("otel-sentry-bridge: could not encode metrics", exc_info=True)
            return MetricExportResult.FAILURE
        timeout = max(0.001, min(self.timeout, timeout_millis / 1000))
        answer = self._transport.request("POST", self.endpoint, headers=self._headers, timeout=timeout, data=body)
        status = answer.status_code
        problem = f"HTTP {status}" if answer.error is None else f"{type(answer.error).__name__}: {answer.error}"
        if status is not None and 200 <= status < 300:
            self.exported += 1
            return MetricExportResult.SUCCESS
        self.failed += 1
        self._warn(status, problem)
        return MetricExportResult.FAILURE

    def _warn(self, status: Optional[int], problem: str) -> None:
        if status in _NO_PIPELINE:
            if self.no_pipeline_warned:
                logger.debug("otel-sentry-bridge: metrics export answered %s", problem)
                return
            self.no_pipeline_warned = True
            logger.warning(
                "otel-sentry-bridge: the collector at %s answered %s to metrics: it seems to have no metrics "
                "pipeline. Metrics are dropped (this is said once); add a metrics pipeline to the collector "
                "or set OTEL_METRICS_EXPORTER=none",
                self.endpoint,
                problem,
            )
            return
        now = time.monotonic()
        if now - self._last_warning >= self._warn_interval:
            self._last_warning = now
            logger.warning(
                "otel-sentry-bridge: metrics export to %s failed (%s); %d failed so far",
                self.endpoint,
                problem,
                self.failed,
            )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop; never waits for an export in flight to a hung collector (that one closes the connection
        itself when its own timeout ends)."""
        self._closed = True
        self._transport.close()


# -- the leg ------------------------------------------------------------------------------------------
class MetricsLeg:
    """The bridge's MeterProvider and what it exports to."""

    def __init__(self, options: Options, resource: Resource) -> None:
        self.options = options
        self.otlp_exporter: Optional[OtlpMetricExporter] = None
        readers: list[MetricReader] = []
        interval, timeout = options.metric_export_interval_ms, options.metric_export_timeout_ms
        if "otlp" in options.metrics_exporters:
            self.otlp_exporter = OtlpMetricExporter(
                options.metrics_endpoint,
                options.metrics_headers,
                options.metrics_timeout,
                options.metrics_compression,
                options.metrics_temporality,
            )
            readers.append(PeriodicExportingMetricReader(self.otlp_exporter, interval, timeout))
        if "console" in options.metrics_exporters:
            # sys.stdout as it is now (the exporter's default is the one of when the SDK was imported)
            console = ConsoleMetricExporter(
                out=sys.stdout, preferred_temporality=temporality_for(options.metrics_temporality)
            )
            readers.append(PeriodicExportingMetricReader(console, interval, timeout))
        self.readers = readers
        self.meter_provider = SdkMeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        self._closed = False

    def flush(self, timeout: float) -> bool:
        """Collect and export now (both readers), within ``timeout`` seconds."""
        if self._closed:
            return True
        try:
            return bool(self.meter_provider.force_flush(max(1, int(timeout * 1000))))
        except Exception:
            logger.debug("otel-sentry-bridge: metrics flush failed", exc_info=True)
            return False

    def shutdown(self, timeout: float) -> None:
        """A last collection and export, then stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.meter_provider.shutdown(max(1, int(timeout * 1000)))
        except Exception:
            logger.debug("otel-sentry-bridge: metrics shutdown failed", exc_info=True)


def build_metrics_leg(options: Options, resource: Resource) -> Optional[MetricsLeg]:
    """The metrics leg ``options`` ask for, or None (``OTEL_METRICS_EXPORTER=none``)."""
    if not options.metrics_enabled:
        return None
    return MetricsLeg(options, resource)
