"""The app under test, and the five stacks compared, each built for the sink's ports.

Each factory imports only what its stack needs, so a configuration's process (and its peak RSS) holds
its own SDKs and nothing else. Every stack is the library's defaults except what the comparison fixes:
the endpoint, the DSN, and the sampling of the scenario.

- ``a``: the bare app.
- ``b``: OpenTelemetry's ``OpenTelemetryMiddleware`` + ``BatchSpanProcessor`` (defaults) + OTLP/HTTP exporter.
- ``c``: sentry-sdk's ``SentryWsgiMiddleware``, ``traces_sample_rate=1.0`` (0 when unsampled), its default
  transport and queue (what it drops is part of the comparison).
- ``d``: b and c stacked, as mixed deployments run today (Sentry's middleware outermost).
- ``e``: the bridge, exporting OTLP and Sentry envelopes. Until the Sentry leg (``bridge.sentry.convert``,
  ``bridge.sentry.transport``) is merged, it runs OTLP-only and says so (``Stack.note``).
"""
from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CONFIGS", "SCENARIOS", "AppError", "App", "Stack", "build", "channels", "sentry_leg_available"]

CONFIGS = ("a", "b", "c", "d", "e")
SCENARIOS = ("ok", "errors", "unsampled")  # "unsampled" also raises on every 10th request
ERROR_EVERY = 10

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AppError(Exception):
    """What the app raises on every 10th request in the ``errors`` and ``unsampled`` scenarios."""


class App:
    """A small WSGI app; counts what it served. With ``fail``, request number 10, 20, ... raises."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls = 0
        self.raised = 0
        self._lock = threading.Lock()  # gunicorn's gthread worker calls the app from several threads

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            self.calls += 1
            number = self.calls
            fails = self.fail and number % ERROR_EVERY == 0
            if fails:
                self.raised += 1
        if fails:
            raise AppError(f"request {number} failed on purpose")
        body = b"hello, world\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


@dataclass
class Stack:
    config: str
    app: App
    wsgi: WSGIApp
    shutdown: Callable[[float], None] = lambda timeout: None
    note: str = ""
    channels: tuple[str, ...] = field(default=())


def sentry_leg_available() -> bool:
    """True once the Sentry leg's modules are merged into this checkout."""
    return all(importlib.util.find_spec(f"bridge.sentry.{name}") is not None for name in ("convert", "transport"))


def channels(config: str) -> tuple[str, ...]:
    """The channels a configuration delivers: ``otlp`` and/or ``sentry``."""
    if config == "e":
        return ("otlp", "sentry") if sentry_leg_available() else ("otlp",)
    return {"a": (), "b": ("otlp",), "c": ("sentry",), "d": ("otlp", "sentry")}[config]


def _otel(app: WSGIApp, otlp_endpoint: str, sampled: bool) -> tuple[WSGIApp, Callable[[float], None]]:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    # The bridge's sampler for traces_sample_rate=0 is this one too; sampled runs use the SDK default.
    provider = TracerProvider(sampler=None if sampled else ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)

    def shutdown(timeout: float) -> None:
        provider.force_flush(int(timeout * 1000))
        provider.shutdown()

    return OpenTelemetryMiddleware(app), shutdown


def _sentry(app: WSGIApp, dsn: str, sampled: bool) -> tuple[WSGIApp, Callable[[float], None]]:
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0 if sampled else 0.0)

    def shutdown(timeout: float) -> None:
        sentry_sdk.flush(timeout)
        sentry_sdk.get_client().close(timeout)

    return SentryWsgiMiddleware(app), shutdown


def _bridge(app: WSGIApp, otlp_endpoint: str, dsn: str, sampled: bool) -> tuple[WSGIApp, Callable[[float], None], str]:
    import bridge

    # Metrics off, like for like with b (no MeterProvider there: its instruments are no-ops).
    options: dict[str, Any] = {"otlp_endpoint": otlp_endpoint, "metrics_exporters": "none"}
    note = ""
    if sentry_leg_available():
        options["dsn"] = dsn
    else:
        note = "OTLP only: the Sentry leg (bridge.sentry.convert/transport) is not merged yet"
    if not sampled:
        options["traces_sample_rate"] = 0.0
    bridge.init(**options)
    return bridge.BridgeMiddleware(app), bridge.shutdown, note


def build(config: str, scenario: str, otlp_endpoint: str, dsn: str) -> Stack:
    """The stack ``config`` (a-e) for ``scenario``, exporting to the sink."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    app = App(fail=scenario != "ok")
    sampled = scenario != "unsampled"
    if config == "a":
        return Stack("a", app, app)
    if config == "b":
        wsgi, shutdown = _otel(app, otlp_endpoint, sampled)
        return Stack("b", app, wsgi, shutdown, channels=channels("b"))
    if config == "c":
        wsgi, shutdown = _sentry(app, dsn, sampled)
        return Stack("c", app, wsgi, shutdown, channels=channels("c"))
    if config == "d":
        inner, otel_shutdown = _otel(app, otlp_endpoint, sampled)
        wsgi, sentry_shutdown = _sentry(inner, dsn, sampled)

        def shutdown(timeout: float) -> None:
            otel_shutdown(timeout)
            sentry_shutdown(timeout)

        return Stack("d", app, wsgi, shutdown, channels=channels("d"))
    if config == "e":
        wsgi, shutdown, note = _bridge(app, otlp_endpoint, dsn, sampled)
        return Stack("e", app, wsgi, shutdown, note=note, channels=channels("e"))
    raise ValueError(f"unknown configuration {config!r}")
