"""otel-sentry-bridge: one OpenTelemetry instrumentation, exported to OTLP and to Sentry."""
from __future__ import annotations

__all__: list[str] = []
