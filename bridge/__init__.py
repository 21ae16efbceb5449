"""otel-sentry-bridge: one OpenTelemetry instrumentation for WSGI apps, exported to OTLP and to Sentry.

import bridge
bridge.init()                          # configured from OTEL_* and SENTRY_* variables
app = bridge.BridgeMiddleware(app)     # one SERVER span per request; errors to both backends
app = bridge.BridgeASGIMiddleware(app) # the same for ASGI apps (FastAPI, Starlette, Django, Channels)
"""

from __future__ import annotations

from bridge.asgi import BridgeASGIMiddleware
from bridge.errors import ConfigError
from bridge.health import BridgeStats, LogsStats, MetricsStats, OtlpStats
from bridge.jobs import monitor, trace
from bridge.scope import (
    add_breadcrumb,
    capture_exception,
    capture_message,
    last_event_id,
    set_context,
    set_extra,
    set_level,
    set_tag,
    set_tags,
    set_user,
)
from bridge.scopes import Scope, get_current_scope, get_isolation_scope, isolation_scope, new_scope
from bridge.setup import Bridge, flush, init, shutdown, stats
from bridge.version import __version__
from bridge.wsgi import BridgeMiddleware

__all__ = [
    "Bridge",
    "BridgeASGIMiddleware",
    "BridgeMiddleware",
    "BridgeStats",
    "ConfigError",
    "__version__",
    "capture_exception",
    "capture_message",
    "flush",
    "init",
    "monitor",
    "LogsStats",
    "MetricsStats",
    "OtlpStats",
    "set_tag",
    "set_user",
    "shutdown",
    "stats",
    "trace",
    "Scope",
    "add_breadcrumb",
    "get_current_scope",
    "get_isolation_scope",
    "isolation_scope",
    "last_event_id",
    "new_scope",
    "set_context",
    "set_extra",
    "set_level",
    "set_tags",
]
