"""``init()`` builds one TracerProvider, one sampler and both export legs from :class:`Options`.

Calling ``init()`` again replaces the previous configuration (its queued data is flushed first), so
exporters are never doubled. The OTel global tracer provider is set once, to a thin provider that
delegates to whichever configuration is active, so tracers obtained before a re-init keep working.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable, Optional

from opentelemetry import context as context_api
from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.util.types import Attributes

from bridge.batch import BoundedBatchSpanProcessor
from bridge.config import Options
from bridge.errors import ConfigError
from bridge.health import BridgeStats, LogsStats, MetricsStats, OtlpStats
from bridge.otlp import CountingSpanExporter, build_otlp_exporter
from bridge.sampling import build_sampler
from bridge.version import __version__

__all__ = ["Bridge", "init", "flush", "shutdown", "stats", "active", "build_sampler", "build_resource"]

logger = logging.getLogger(__name__)

SCOPE_NAME = "bridge.wsgi"


def build_resource(options: Options) -> Resource:
    attributes: dict[str, Any] = dict(options.resource_attributes)
    attributes["service.name"] = options.service_name
    if options.environment and "deployment.environment.name" not in attributes:
        attributes["deployment.environment.name"] = options.environment
    if options.release and "service.version" not in attributes:
        attributes["service.version"] = options.release
    if options.sentry_enabled:
        # Tells collector pipelines that this service reports to Sentry itself (collector-config/).
        attributes.setdefault("otel_sentry_bridge.sentry_direct", True)
    return Resource.create(attributes)


SENTRY_PROPAGATOR_NAMES = ("sentry_bridge", "sentry")


def build_propagator(options: Options) -> TextMapPropagator:
    """The composite of ``options.propagators``, loaded by name from the ``opentelemetry_propagator`` group.

    ``sentry`` means the bridge's own Sentry propagator (sentry-sdk registers that name for one that only
    works with sentry-sdk's span processor). The Sentry propagator always runs last: W3C headers win on
    extract, and on inject it merges into the ``baggage`` header the W3C propagator wrote.
    """
    from importlib.metadata import entry_points

    from bridge.propagation import SentryPropagator

    propagators: list[TextMapPropagator] = []
    sentry: Optional[TextMapPropagator] = None
    for name in options.propagators:
        if name == "none":
            continue
        if name in SENTRY_PROPAGATOR_NAMES:
            sentry = SentryPropagator()
            continue
        found = list(entry_points(group="opentelemetry_propagator", name=name))
        if not found:
            setting = "propagators" if options.sources.get("propagators") == "argument" else "OTEL_PROPAGATORS"
            raise ConfigError(setting, ",".join(options.propagators), f"no propagator named {name!r} is installed")
        propagators.append(found[0].load()())
    if sentry is not None:
        propagators.append(sentry)
    return CompositePropagator(propagators)


class Bridge:
    """One active configuration: the provider, its two legs, and the tracer the middleware uses."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.provider: Optional[TracerProvider] = None
        self.tracer: trace_api.Tracer = trace_api.NoOpTracer()
        self.otlp_exporter: Optional[CountingSpanExporter] = None
        self.otlp_processor: Optional[BoundedBatchSpanProcessor] = None
        self.sentry: Any = None  # bridge.sentry.leg.SentryLeg when the Sentry leg is on
        self.metrics: Any = None  # bridge.metrics.MetricsLeg when OTEL_METRICS_EXPORTER asks for one
        self.logs: Any = None  # bridge.logs.LogsLeg when OTEL_LOGS_EXPORTER is set
        self._processors: list[SpanProcessor] = []
        self._closed = False
        if options.disabled:
            return
        self.provider = TracerProvider(
            sampler=build_sampler(options), resource=build_resource(options), shutdown_on_exit=False
        )
        shutdown_millis = options.shutdown_timeout * 1000
        if options.otlp_enabled:
            self.otlp_exporter = build_otlp_exporter(options)
            self.otlp_processor = BoundedBatchSpanProcessor(
                self.otlp_exporter,
                max_queue_size=options.bsp_max_queue_size,
                schedule_delay_millis=options.bsp_schedule_delay_ms,
                max_export_batch_size=options.bsp_max_export_batch_size,
                export_timeout_millis=options.bsp_export_timeout_ms,
                shutdown_timeout_millis=shutdown_millis,
            )
            self._add(self.otlp_processor)
        if "console" in options.exporters:
            self._add(BoundedBatchSpanProcessor(ConsoleSpanExporter(), shutdown_timeout_millis=shutdown_millis))
        if options.sentry_enabled:
            from bridge.sentry.leg import SentryLeg

            self.sentry = SentryLeg(options, self.provider.resource)
            self._add(self.sentry.processor)
            from bridge.integrations.spancrumbs import BreadcrumbSpanProcessor

            self._add(BreadcrumbSpanProcessor())  # crumbs from HTTP client and DB spans (docs/scope-api.md)
        if options.metrics_enabled:
            from bridge.metrics import build_metrics_leg

            self.metrics = build_metrics_leg(options, self.provider.resource)
        if options.logs_enabled:
            from bridge.logs import LogsLeg

            self.logs = LogsLeg(options, self.provider.resource)
        self.tracer = self.provider.get_tracer(SCOPE_NAME, __version__)

    def _add(self, processor: SpanProcessor) -> None:
        assert self.provider is not None
        self.provider.add_span_processor(processor)
        self._processors.append(processor)

    @property
    def enabled(self) -> bool:
        return self.provider is not None and not self._closed

    def flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued so far, on both legs at once, within ``timeout`` seconds in all.

        The legs flush in parallel, so a backend that hangs costs the other nothing (the provider's own
        ``force_flush`` goes one processor after the other, and gives the next only what time is left).
        """
        if self.provider is None or self._closed:
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        calls = [functools.partial(_flush_processor, processor, deadline) for processor in self._processors]
        if self.metrics is not None:
            calls.append(functools.partial(_flush_metrics, self.metrics, deadline))
        if self.logs is not None:
            calls.append(functools.partial(_flush_logs, self.logs, deadline))
        return _all_at_once(calls, deadline)

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Flush (within ``timeout``, default ``shutdown_timeout``) and stop both legs. Idempotent.

        The whole call takes at most ``timeout`` (plus thread scheduling), whatever the backends do: what
        is still queued at the deadline is dropped and counted (``stats()``).
        """
        if self.provider is None or self._closed:
            return
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        self.flush(timeout)
        self._closed = True

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        with _suppressed():
            if self.sentry is not None:  # before the provider, so its processor's shutdown is a no-op
                self.sentry.shutdown(left())
            if self.metrics is not None:
                self.metrics.shutdown(left())
            for processor in self._processors:
                if isinstance(processor, BoundedBatchSpanProcessor):
                    processor.shutdown(left() * 1000)
            self.provider.shutdown()
            if self.logs is not None:
                self.logs.shutdown(left())

    def stats(self) -> BridgeStats:
        """What each leg delivered and lost so far (see ``bridge.health``)."""
        otlp = None
        if self.otlp_exporter is not None and self.otlp_processor is not None:
            otlp = OtlpStats(
                exported=self.otlp_exporter.exported_spans,
                failed=self.otlp_exporter.lost_spans,
                dropped=self.otlp_processor.dropped_spans,
                abandoned=self.otlp_processor.abandoned_spans,
                queued=self.otlp_processor.queued_spans,
            )
        sentry = self.sentry.transport.stats() if self.sentry is not None else None
        logs = None
        if self.logs is not None and self.logs.exporter is not None:
            processor = self.logs.otlp_processor
            logs = LogsStats(
                exported=self.logs.exporter.exported_records,
                failed=self.logs.exporter.lost_records,
                dropped=processor.dropped_items,
                abandoned=processor.abandoned_items,
                queued=processor.queued_items,
            )
        metrics = None
        if self.metrics is not None and self.metrics.otlp_exporter is not None:
            exporter = self.metrics.otlp_exporter
            metrics = MetricsStats(exported=exporter.exported, failed=exporter.failed)
        return BridgeStats(otlp=otlp, sentry=sentry, logs=logs, metrics=metrics)


def _flush_processor(processor: SpanProcessor, deadline: float) -> bool:
    with _suppressed():
        return bool(processor.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000)))


def _flush_metrics(metrics: Any, deadline: float) -> bool:
    return bool(metrics.flush(max(0.0, deadline - time.monotonic())))


def _flush_logs(logs: Any, deadline: float) -> bool:
    with _suppressed():
        return bool(logs.flush(max(0.0, deadline - time.monotonic())))


def _all_at_once(calls: Sequence[Callable[[], bool]], deadline: float) -> bool:
    """Run ``calls`` in parallel (the last one on this thread); True when all returned True by ``deadline``."""
    results = [False] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception:
            logger.debug("otel-sentry-bridge: a flush failed", exc_info=True)

    threads = []
    for index in range(len(calls) - 1):
        thread = threading.Thread(target=run, args=(index,), name="otel-sentry-bridge-flush", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads (interpreter exit): one after the other
            run(index)
            continue
        threads.append(thread)
    if calls:
        run(len(calls) - 1)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return all(results)


@contextmanager
def _suppressed() -> Iterator[None]:
    """Our own export calls never become spans."""
    token = context_api.attach(context_api.set_value(context_api._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        context_api.detach(token)


class _DelegatingTracer(trace_api.Tracer):
    """A tracer that always uses the provider of the active configuration (survives re-init)."""

    def __init__(self, args: tuple[Any, ...]) -> None:
        self._args = args
        self._provider: Optional[TracerProvider] = None
        self._tracer: trace_api.Tracer = trace_api.NoOpTracer()

    def _current(self) -> trace_api.Tracer:
        bridge = _active
        provider = bridge.provider if bridge is not None and bridge.enabled else None
        if provider is not self._provider:
            self._provider = provider
            self._tracer = provider.get_tracer(*self._args) if provider is not None else trace_api.NoOpTracer()
        return self._tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace_api.Span:
        return self._current().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._current().start_as_current_span(*args, **kwargs)


class _DelegatingTracerProvider(trace_api.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: Optional[str] = None,
        schema_url: Optional[str] = None,
        attributes: Attributes = None,
    ) -> trace_api.Tracer:
        return _DelegatingTracer((instrumenting_module_name, instrumenting_library_version, schema_url, attributes))


_lock = threading.Lock()
_active: Optional[Bridge] = None
_global_installed = False
_atexit_registered = False


def active() -> Optional[Bridge]:
    return _active


def init(**options: Any) -> Bridge:
    """Configure the bridge from keyword arguments over the environment; replaces any earlier ``init()``.

    Raises :class:`bridge.ConfigError` for a value that must be fixed. See the README for every option.
    """
    global _active, _global_installed, _atexit_registered
    resolved = Options.resolve(options)
    propagator = None if resolved.disabled else build_propagator(resolved)
    new = Bridge(resolved)
    with _lock:
        previous, _active = _active, new
        if not resolved.disabled:
            assert propagator is not None
            propagate.set_global_textmap(propagator)
            if not _global_installed:
                current = trace_api.get_tracer_provider()
                if isinstance(current, trace_api.ProxyTracerProvider):
                    trace_api.set_tracer_provider(_DelegatingTracerProvider())
                else:
                    logger.info(
                        "otel-sentry-bridge: a global TracerProvider (%s) is already set; the bridge's middleware "
                        "uses its own provider",
                        type(current).__name__,
                    )
                _global_installed = True
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
    if previous is not None:
        logger.info("otel-sentry-bridge: init() called again; the previous configuration was flushed and replaced")
        previous.shutdown()
    if resolved.disabled:
        logger.info("otel-sentry-bridge: OTEL_SDK_DISABLED is true; nothing is traced or exported")
    _install_integrations(new)
    return new


def _install_integrations(bridge: Bridge) -> None:
    """Scopes and sentry-sdk's default integrations (logging, excepthook, threading, dedupe) for the Sentry leg."""
    from bridge import integrations, scopes

    options = bridge.options
    try:
        scopes.configure(options.max_breadcrumbs, options.before_breadcrumb)
        if bridge.sentry is None:
            integrations.uninstall()
        else:
            integrations.install(options.integrations, options.default_integrations, options.disabled_integrations)
    except Exception:
        logger.warning("otel-sentry-bridge: could not install the Sentry integrations", exc_info=True)


def flush(timeout: float = 5.0) -> bool:
    """Export everything queued so far within ``timeout`` seconds; True when all of it went out."""
    bridge = _active
    return True if bridge is None else bridge.flush(timeout)


def stats() -> BridgeStats:
    """Delivered and lost counts of the active configuration (both None when there is none)."""
    bridge = _active
    return BridgeStats(otlp=None, sentry=None) if bridge is None else bridge.stats()


def shutdown(timeout: Optional[float] = None) -> None:
    """Flush and stop the active configuration; the middleware then passes requests straight through."""
    global _active
    with _lock:
        bridge, _active = _active, None
    if bridge is not None:
        bridge.shutdown(timeout)
        from bridge import integrations, scopes

        integrations.uninstall()
        scopes.reset_process_scope()


def _at_exit() -> None:
    try:
        shutdown()
    except Exception:  # pragma: no cover - never raise at interpreter exit
        logger.exception("otel-sentry-bridge: shutdown at exit failed")
