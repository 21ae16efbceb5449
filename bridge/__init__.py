"""otel-sentry-bridge: one OpenTelemetry instrumentation for WSGI apps, exported to OTLP and to Sentry.

import bridge
bridge.init()                          # configured from OTEL_* and SENTRY_* variables
app = bridge.BridgeMiddleware(app)     # one SERVER span per request; errors to both backends
"""

from __future__ import annotations

from bridge.errors import ConfigError
from bridge.health import BridgeStats, OtlpStats
from bridge.jobs import monitor, trace
from bridge.scope import capture_exception, capture_message, set_tag, set_user
from bridge.setup import Bridge, flush, init, shutdown, stats
from bridge.version import __version__
from bridge.wsgi import BridgeMiddleware

__all__ = [
    "Bridge",
    "BridgeMiddleware",
    "BridgeStats",
    "ConfigError",
    "__version__",
    "capture_exception",
    "capture_message",
    "flush",
    "init",
    "monitor",
    "OtlpStats",
    "set_tag",
    "set_user",
    "shutdown",
    "stats",
    "trace",
]
