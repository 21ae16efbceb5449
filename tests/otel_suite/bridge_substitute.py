"""A pytest plugin for OpenTelemetry's own WSGI test suite: ``OpenTelemetryMiddleware`` becomes ``BridgeMiddleware``.

Loaded with ``-p bridge_substitute`` before the suite's modules are imported; they call
``otel_wsgi.OpenTelemetryMiddleware(...)`` through the module, so every test builds the bridge instead.
BridgeMiddleware takes OpenTelemetryMiddleware's arguments in its order, so no adapter is needed.
"""

from __future__ import annotations

import opentelemetry.instrumentation.wsgi as otel_wsgi

from bridge import BridgeMiddleware

otel_wsgi.OpenTelemetryMiddleware = BridgeMiddleware  # type: ignore[misc,assignment]
