"""The logs leg: Python ``logging`` records and recorded exceptions → OpenTelemetry log records → OTLP ``/v1/logs``.

Off unless ``OTEL_LOGS_EXPORTER`` names an exporter (``otlp``, ``console``): an application's logs usually
already go somewhere (files, stdout collected by the platform), and sending each record a second time, over
the network, is a cost the user must choose (docs/logs.md).

- One :class:`LoggerProvider` with one batch processor per exporter (``OTEL_BLRP_*``): the SDK's
  ``BatchLogRecordProcessor`` with its drops counted and its waits bounded (``bridge.batch``); it restarts
  its worker in a ``fork()`` child, as the traces leg does. The OTLP exporter is OpenTelemetry's, with the
  body written by ``bridge.otlp_encode.encode_logs`` and the POST made by ``bridge.otlp_transport``: what
  lets the exporting thread keep pace with a logging-heavy app.
- One handler, :class:`OtlpLogHandler`, on the root logger. Not the SDK's ``LoggingHandler`` (deprecated in
  the pinned SDK in favour of ``opentelemetry-instrumentation-logging``'s): a second OTel handler found on
  the root logger means the bridge adds none, so that no record is exported twice. The bridge's provider is
  not made global, so ``opentelemetry-instrumentation-logging``'s handler (which ``opentelemetry-instrument``
  installs when that package is present) finds no provider and exports nothing.
- Records of the bridge's and OpenTelemetry's own loggers, and any record logged on the log exporter's worker
  thread (``urllib3`` while it posts, where a proxy keeps ``requests``), are left out: exporting them would
  feed the exporter its own chatter.
- Each record carries the trace and span ids of the span current when it was logged.

:func:`emit_exception` is the switch of ``OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN`` for the exceptions the
bridge records (``bridge.scope.record_exception``): ``logs`` makes each one a log record (event name
``exception``) instead of a span event, ``logs/dup`` both; unset, span events as before.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    ConsoleLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource

from bridge.batch import BoundedBatchLogRecordProcessor
from bridge.config import Options
from bridge.otlp import ExportLedger, post_encoded, throttle_sdk_logs
from bridge.otlp_encode import encode_logs

if TYPE_CHECKING:
    from bridge.setup import Bridge

__all__ = [
    "LogsLeg",
    "OtlpLogHandler",
    "CountingLogExporter",
    "DirectOTLPLogExporter",
    "EXCLUDED_LOGGERS",
    "emit_exception",
    "exception_signal",
]

logger = logging.getLogger(__name__)

SCOPE_NAME = "bridge.exceptions"  # the instrumentation scope of exception log records
EXCLUDED_LOGGERS = ("bridge", "opentelemetry")
SDK_LOG_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http._log_exporter"
_WORKER_THREAD = "OtelBatchLogRecordProcessor"  # the SDK's processor's worker
# Python levels → OpenTelemetry severity numbers (the log data model's table); between steps, the lower.
_SEVERITIES = (
    (logging.CRITICAL, SeverityNumber.FATAL, "FATAL"),
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.DEBUG, SeverityNumber.DEBUG, "DEBUG"),
)
# LogRecord attributes that are logging's own, not the user's ``extra=``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_PLAIN = (str, bool, int, float, bytes)


@functools.lru_cache(maxsize=64)  # a handful of levels in any process: looked up once each
def severity(levelno: int) -> tuple[SeverityNumber, str]:
    for floor, number, text in _SEVERITIES:
        if levelno >= floor:
            return number, text
    return SeverityNumber.TRACE, "TRACE"


class CountingLogExporter(LogRecordExporter):
    """Delegates to ``inner``; counts exported and lost records (``bridge.otlp.ExportLedger``)."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.ledger = ExportLedger("log records")

    @property
    def exported_records(self) -> int:
        return self.ledger.exported

    @property
    def lost_records(self) -> int:
        return self.ledger.lost

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        delivered = self.ledger.export(batch, self.inner.export, LogRecordExportResult.SUCCESS)
        return LogRecordExportResult.SUCCESS if delivered else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        self.ledger.stop()
        self.inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def build_log_exporter(options: Options, name: str) -> LogRecordExporter:
    if name == "console":
        return ConsoleLogRecordExporter()
    from opentelemetry.exporter.otlp.proto.http import Compression

    throttle_sdk_logs()
    sdk_logger = logging.getLogger(SDK_LOG_EXPORTER_LOGGER)
    from bridge.otlp import OncePerInterval

    if not any(isinstance(existing, OncePerInterval) for existing in sdk_logger.filters):
        sdk_logger.addFilter(OncePerInterval())
    compression = {"gzip": Compression.Gzip, "deflate": Compression.Deflate, "none": Compression.NoCompression}
    from bridge.otlp_transport import otlp_http_exporter

    exporter: LogRecordExporter = otlp_http_exporter(
        DirectOTLPLogExporter,
        "LOGS",
        endpoint=options.logs_endpoint,
        headers=dict(options.logs_headers),
        timeout=options.logs_timeout,
        compression=compression[options.logs_compression],
    )
    return exporter


class DirectOTLPLogExporter(OTLPLogExporter):
    """OpenTelemetry's OTLP/HTTP log exporter (its HTTP client, retries, headers, compression, size limit),
    with the body written by ``bridge.otlp_encode.encode_logs`` instead of through protobuf message objects:
    the same request for a collector, a fraction of the CPU per record, which is what lets the exporting
    thread keep pace with a logging-heavy app (docs/performance.md)."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._shutdown:
            return super().export(batch)  # the SDK's own warning and FAILURE
        delivered = post_encoded(self, batch, encode_logs, "log records")
        return LogRecordExportResult.SUCCESS if delivered else LogRecordExportResult.FAILURE


class LogsLeg:
    """The provider, its processors and the root logger's handler; built by ``init()``."""

    def __init__(self, options: Options, resource: Resource) -> None:
        self.options = options
        self.provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.processors: list[BoundedBatchLogRecordProcessor] = []
        self.exporter: Optional[CountingLogExporter] = None
        self.otlp_processor: Any = None  # the BoundedBatchLogRecordProcessor of ``exporter``
        for name in options.logs_exporters:
            exporter: LogRecordExporter = build_log_exporter(options, name)
            if name == "otlp":
                exporter = self.exporter = CountingLogExporter(exporter)
            processor = BoundedBatchLogRecordProcessor(
                exporter,
                schedule_delay_millis=options.blrp_schedule_delay_ms,
                max_export_batch_size=options.blrp_max_export_batch_size,
                export_timeout_millis=options.blrp_export_timeout_ms,
                max_queue_size=options.blrp_max_queue_size,
            )
            if name == "otlp":
                self.otlp_processor = processor
            self.provider.add_log_record_processor(processor)
            self.processors.append(processor)
        self.exception_logger = self.provider.get_logger(SCOPE_NAME)
        self.handler: Optional[OtlpLogHandler] = None
        root = logging.getLogger()
        for previous in [handler for handler in root.handlers if isinstance(handler, OtlpLogHandler)]:
            root.removeHandler(previous)  # an earlier init()'s: this configuration replaces it
        other = _other_otel_handler()
        if other is not None:
            logger.warning(
                "otel-sentry-bridge: the root logger already has %s; the bridge adds no log handler of its own "
                "(each record would be exported twice)",
                type(other).__module__ + "." + type(other).__qualname__,
            )
        else:
            self.handler = OtlpLogHandler(self.provider)
            root.addHandler(self.handler)

    def flush(self, timeout: float) -> bool:
        millis = int(max(0.0, timeout) * 1000)
        return all([processor.force_flush(millis) for processor in self.processors])

    def shutdown(self, timeout: float) -> None:
        """Remove the handler; stop the processors within ``timeout`` seconds (the SDK's own wait is 30 s)."""
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler = None
        stopper = threading.Thread(target=self.provider.shutdown, name="otel-sentry-bridge-logs-stop", daemon=True)
        try:
            stopper.start()
        except RuntimeError:  # no new threads at interpreter exit
            self.provider.shutdown()
            return
        stopper.join(max(0.0, timeout))


def _other_otel_handler() -> Optional[logging.Handler]:
    for handler in logging.getLogger().handlers:
        module = type(handler).__module__
        if module.startswith("opentelemetry.") and type(handler).__name__ == "LoggingHandler":
            return handler
    return None


class OtlpLogHandler(logging.Handler):
    """``logging`` records → log records of ``provider`` (one logger per ``logging`` logger name)."""

    def __init__(self, provider: LoggerProvider) -> None:
        super().__init__(logging.NOTSET)
        self.provider = provider
        self._busy = threading.local()
        # Per ``logging`` logger name: its OTel logger, or None when the name is excluded. Looked up once,
        # not per record (the exclusion test and the provider's lookup cost ~2 us a record otherwise).
        self._loggers: dict[str, Any] = {}

    def _logger_for(self, name: str) -> Any:
        found = self._loggers.get(name, self)
        if found is self:
            excluded = any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED_LOGGERS)
            found = None if excluded else self.provider.get_logger(name)
            if len(self._loggers) >= 4096:  # names made per request (a logger per id) must not grow this
                self._loggers.clear()
            self._loggers[name] = found
        return found

    def emit(self, record: logging.LogRecord) -> None:
        otel_logger = self._logger_for(record.name)
        if otel_logger is None:
            return
        if getattr(self._busy, "on", False) or threading.current_thread().name == _WORKER_THREAD:
            return  # a record logged while one is being emitted, or by the exporter's own thread
        self._busy.on = True
        try:
            number, text = severity(record.levelno)
            exception = record.exc_info[1] if record.exc_info else None
            otel_logger.emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=context_api.get_current(),
                severity_number=number,
                severity_text=text,
                body=_body(record),
                attributes=_attributes(record),
                exception=exception,
            )
        except Exception:  # never into the host's logging call (this logger's records are not exported)
            logger.debug("otel-sentry-bridge: could not export a logging record", exc_info=True)
        finally:
            self._busy.on = False

    def flush(self) -> None:
        """Nothing: ``logging.shutdown()`` calls this at exit; ``bridge.flush()`` flushes the processors."""


def _body(record: logging.LogRecord) -> Any:
    if not record.args and not isinstance(record.msg, str):
        return record.msg if isinstance(record.msg, _PLAIN) else str(record.msg)
    return record.getMessage()


def _attributes(record: logging.LogRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "code.file.path": record.pathname,
        "code.function.name": record.funcName,
        "code.line.number": record.lineno,
        "thread.name": record.threadName or "",
    }
    fields = vars(record)
    extra = fields.keys() - _RESERVED  # the caller's extra={...} (one set operation: usually empty)
    for key in extra:
        value = fields[key]
        if not key.startswith("_") and isinstance(value, _PLAIN):  # plain values only
            attributes[key] = value
    return attributes


# -- OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN --------------------------------------------------------------
def exception_signal(bridge: Optional[Bridge]) -> str:
    """``span``, ``logs`` or ``logs/dup``: how ``bridge`` records exceptions. Without a logs leg
    (``OTEL_LOGS_EXPORTER`` unset) the opt-in has nowhere to send records, so exceptions stay span events."""
    if bridge is None or getattr(bridge, "logs", None) is None:
        return "span"
    return bridge.options.exception_signal


def emit_exception(bridge: Optional[Bridge], span: trace_api.Span, exc: BaseException) -> bool:
    """Emit ``exc`` as an ``exception`` log record in ``span``'s trace when the opt-in says so.

    Returns whether the caller should (also) record it as a span event. Never raises.
    """
    signal = exception_signal(bridge)
    if signal == "span":
        return True
    try:
        assert bridge is not None and bridge.logs is not None
        leg: LogsLeg = bridge.logs
        leg.exception_logger.emit(
            timestamp=time.time_ns(),
            context=trace_api.set_span_in_context(span),
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            event_name="exception",
            exception=exc,
        )
    except Exception:
        logger.warning("otel-sentry-bridge: could not emit the exception as a log record", exc_info=True)
        return True
    return signal == "logs/dup"
