"""The ASGI app under test and the stacks compared (the ASGI twin of ``benchmarks.apps``).

Each factory imports only what its stack needs. Library defaults except what the comparison fixes (the
endpoint, the DSN, the scenario's sampling, and whether per-message spans are made):

- ``a``: the bare app.
- ``b``: OpenTelemetry's ASGI ``OpenTelemetryMiddleware`` with ``exclude_spans=["receive", "send"]`` (one
  span per request, like for like with the bridge's default) + ``BatchSpanProcessor`` + OTLP/HTTP.
- ``bm``: the same with OpenTelemetry's default: an internal span per ``send``/``receive`` message.
- ``c``: sentry-sdk's ``SentryAsgiMiddleware``, ``traces_sample_rate=1.0`` (0 when unsampled).
- ``d``: b and c stacked (Sentry's middleware outermost).
- ``e``: the bridge's ``BridgeASGIMiddleware``, exporting OTLP and Sentry envelopes.
- ``em``: the bridge with ``message_spans=True`` (what turning OpenTelemetry's message spans on costs).
"""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CONFIGS", "SCENARIOS", "AppError", "App", "Stack", "build", "channels", "spans_per_request"]

CONFIGS = ("a", "b", "bm", "c", "d", "e", "em")
SCENARIOS = ("ok", "errors", "unsampled")  # "unsampled" also raises on every 10th request
ERROR_EVERY = 10
BODY = b"hello, world\n"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class AppError(Exception):
    """What the app raises on every 10th request in the ``errors`` and ``unsampled`` scenarios."""


class App:
    """A small ASGI app; counts what it served. With ``fail``, request number 10, 20, ... raises."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls = 0
        self.raised = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.fail and self.calls % ERROR_EVERY == 0:
            self.raised += 1
            raise AppError(f"request {self.calls} failed on purpose")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(BODY))],
            }
        )
        await send({"type": "http.response.body", "body": BODY})


@dataclass
class Stack:
    config: str
    app: App
    asgi: ASGIApp
    shutdown: Callable[[float], None] = lambda timeout: None
    channels: tuple[str, ...] = field(default=())


def channels(config: str) -> tuple[str, ...]:
    """The channels a configuration delivers: ``otlp`` and/or ``sentry``."""
    return {
        "a": (),
        "b": ("otlp",),
        "bm": ("otlp",),
        "c": ("sentry",),
        "d": ("otlp", "sentry"),
        "e": ("otlp", "sentry"),
        "em": ("otlp", "sentry"),
    }[config]


def spans_per_request(config: str) -> int:
    """OTLP spans per successful request: the request's, plus one per ``send`` (start and body) when
    message spans are on (the app never calls ``receive``; a failing request sends nothing)."""
    return 3 if config in ("bm", "em") else 1


def _otel(app: ASGIApp, otlp_endpoint: str, sampled: bool, messages: bool) -> tuple[ASGIApp, Callable[[float], None]]:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(sampler=None if sampled else ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)

    def shutdown(timeout: float) -> None:
        provider.force_flush(int(timeout * 1000))
        provider.shutdown()

    excluded = None if messages else ["receive", "send"]
    return OpenTelemetryMiddleware(app, exclude_spans=excluded), shutdown  # type: ignore[arg-type]


def _sentry(app: ASGIApp, dsn: str, sampled: bool) -> tuple[ASGIApp, Callable[[float], None]]:
    import sentry_sdk
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0 if sampled else 0.0)

    def shutdown(timeout: float) -> None:
        sentry_sdk.flush(timeout)
        sentry_sdk.get_client().close(timeout)

    return SentryAsgiMiddleware(app), shutdown


def _bridge(
    app: ASGIApp, otlp_endpoint: str, dsn: str, sampled: bool, messages: bool
) -> tuple[ASGIApp, Callable[[float], None]]:
    import bridge

    # Metrics off, like for like with b (no MeterProvider there: its instruments are no-ops); the sink has no
    # /v1/metrics.
    options: dict[str, Any] = {"otlp_endpoint": otlp_endpoint, "dsn": dsn, "metrics_exporters": "none"}
    if not sampled:
        options["traces_sample_rate"] = 0.0
    bridge.init(**options)
    return bridge.BridgeASGIMiddleware(app, message_spans=messages), bridge.shutdown


def build(config: str, scenario: str, otlp_endpoint: str, dsn: str) -> Stack:
    """The stack ``config`` for ``scenario``, exporting to the sink."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    app = App(fail=scenario != "ok")
    sampled = scenario != "unsampled"
    if config == "a":
        return Stack("a", app, app)
    if config in ("b", "bm"):
        asgi, shutdown = _otel(app, otlp_endpoint, sampled, messages=config == "bm")
        return Stack(config, app, asgi, shutdown, channels(config))
    if config == "c":
        asgi, shutdown = _sentry(app, dsn, sampled)
        return Stack("c", app, asgi, shutdown, channels("c"))
    if config == "d":
        inner, otel_shutdown = _otel(app, otlp_endpoint, sampled, messages=False)
        asgi, sentry_shutdown = _sentry(inner, dsn, sampled)

        def both(timeout: float) -> None:
            otel_shutdown(timeout)
            sentry_shutdown(timeout)

        return Stack("d", app, asgi, both, channels("d"))
    if config in ("e", "em"):
        asgi, shutdown = _bridge(app, otlp_endpoint, dsn, sampled, messages=config == "em")
        return Stack(config, app, asgi, shutdown, channels(config))
    raise ValueError(f"unknown configuration {config!r}")
