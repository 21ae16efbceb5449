"""The OTLP leg's exporter: OpenTelemetry's own OTLP/HTTP exporter, wrapped to count what it loses.

The SDK exporter logs each failure; under a dead collector that is a line per batch, forever. The wrapper
counts lost spans (``lost_spans``) and logs at most one warning per interval, with the running total; and
the SDK exporter's own log lines are let through at most once per interval per kind of line (a filter on
its logger, ``SDK_EXPORTER_LOGGER``; the first of each kind still tells what went wrong).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bridge.config import Options
from bridge.otlp_encode import encode_spans

__all__ = [
    "CountingSpanExporter",
    "ExportLedger",
    "DirectOTLPSpanExporter",
    "build_otlp_exporter",
    "post_encoded",
    "SDK_EXPORTER_LOGGER",
    "OncePerInterval",
]

logger = logging.getLogger(__name__)

SDK_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"

_COMPRESSION = {"gzip": Compression.Gzip, "deflate": Compression.Deflate, "none": Compression.NoCompression}


FAILED_EXPORT_PAUSE = 0.25  # seconds, as the Sentry transport waits after a network error


class ExportLedger:
    """What one OTLP exporter delivered and lost; after a failed export the next one waits a moment.

    A collector that just failed (refused, 5xx, 429 with a Retry-After longer than the exporter's deadline,
    which makes OpenTelemetry's exporter give up at once) gets ``FAILED_EXPORT_PAUSE`` before the next
    batch: encoding and posting batch after batch into a failure held the GIL the app's requests need
    (benchmarks/faults.py). Waiting releases the GIL; the batch queue bounds (and counts) what piles up
    meanwhile. Losses are logged as one WARNING per ``warn_interval`` with the running total."""

    def __init__(self, what: str, warn_interval: float = 60.0) -> None:
        self._message = f"otel-sentry-bridge: OTLP export failed; %d {what} lost so far"  # what: spans, log records
        self.exported = 0
        self.lost = 0
        self._warn_interval = warn_interval
        self._last_warning = float("-inf")
        self._lock = threading.Lock()
        self._resume_at = 0.0  # after a failed export, the next one waits until then
        self._stopping = threading.Event()

    def export(self, items: Sequence[Any], export: Callable[[Sequence[Any]], Any], success: Any) -> bool:
        """``export(items)`` (after the pause a failure asks for); whether it answered ``success``."""
        pause = self._resume_at - time.monotonic()
        if pause > 0:
            self._stopping.wait(pause)
        try:
            delivered = export(items) is success
        except Exception:  # the SDK exporter should not raise; if it does, it is a loss, not a crash
            logger.debug("OTLP exporter raised", exc_info=True)
            delivered = False
        with self._lock:
            if delivered:
                self.exported += len(items)
                self._resume_at = 0.0
                return True
            self.lost += len(items)
            now = time.monotonic()
            self._resume_at = now + FAILED_EXPORT_PAUSE
            warn = now - self._last_warning >= self._warn_interval
            if warn:
                self._last_warning = now
            total = self.lost
        if warn:
            logger.warning(self._message, total)
        return False

    def stop(self) -> None:
        """End a pause now (shutdown must not wait for it)."""
        self._stopping.set()


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner``; counts exported and lost spans (``ExportLedger``)."""

    def __init__(self, inner: SpanExporter, warn_interval: float = 60.0) -> None:
        self.inner = inner
        self.ledger = ExportLedger("spans", warn_interval)

    @property
    def exported_spans(self) -> int:
        return self.ledger.exported

    @property
    def lost_spans(self) -> int:
        return self.ledger.lost

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        delivered = self.ledger.export(spans, self.inner.export, SpanExportResult.SUCCESS)
        return SpanExportResult.SUCCESS if delivered else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.ledger.stop()
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class DirectOTLPSpanExporter(OTLPSpanExporter):
    """OpenTelemetry's OTLP/HTTP exporter (its HTTP client, retries, headers, compression, size limit),
    with the request body encoded by ``bridge.otlp_encode`` instead of through protobuf message objects:
    ~5x less CPU per span (bridge/otlp_encode.py), the same bytes on the wire for what a collector decodes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # the SDK's own warning and FAILURE
        delivered = post_encoded(self, spans, encode_spans, "spans")
        return SpanExportResult.SUCCESS if delivered else SpanExportResult.FAILURE


def post_encoded(exporter: Any, items: Sequence[Any], encode: Callable[[Sequence[Any]], bytes], what: str) -> bool:
    """What OpenTelemetry's OTLP/HTTP exporters do in ``export()`` (size limit, their client's retries, their
    own metrics), with the body written by ``encode`` (``bridge.otlp_encode``); whether it was delivered."""
    try:
        body = encode(items)
    except Exception:
        logger.exception("otel-sentry-bridge: could not encode %d %s for OTLP", len(items), what)
        return False
    limit = exporter._max_request_size
    if limit > 0 and len(body) > limit:
        logger.warning("Dropping %s batch: %d bytes serialized exceed max_request_size %d", what, len(body), limit)
        return False
    with exporter._metrics.export_operation(len(items)) as result:
        outcome = exporter._client.export(body)
        if not outcome.success:
            result.error = outcome.error
            return False
    return True


class OncePerInterval(logging.Filter):
    """A logger filter: each (level, message template) passes at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[int, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            if len(self._last) > 256:
                self._last.clear()
            self._last[key] = now
            return True


def throttle_sdk_logs(interval: float = 60.0) -> None:
    """Install ``OncePerInterval`` on the SDK exporter's logger (once per process)."""
    sdk_logger = logging.getLogger(SDK_EXPORTER_LOGGER)
    if not any(isinstance(existing, OncePerInterval) for existing in sdk_logger.filters):
        sdk_logger.addFilter(OncePerInterval(interval))


def build_otlp_exporter(options: Options) -> CountingSpanExporter:
    throttle_sdk_logs()
    # OpenTelemetry's own HTTP client (requests), not bridge.otlp_transport: the traces leg shares the
    # process with the Sentry leg's worker, and in the saturation loop the requests client's many GIL
    # hand-overs per POST are what lets that worker in. Over the socket client the Sentry leg lost 9-19 %
    # of its transactions there (benchmarks/README.md); over requests, nothing.
    exporter = DirectOTLPSpanExporter(
        endpoint=options.otlp_endpoint,
        headers=dict(options.otlp_headers),
        timeout=options.otlp_timeout,
        compression=_COMPRESSION[options.otlp_compression],
    )
    return CountingSpanExporter(exporter)
