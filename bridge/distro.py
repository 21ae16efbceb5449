"""Zero-code setup: ``opentelemetry-instrument`` with the bridge installed configures the bridge.

``opentelemetry-instrument`` (opentelemetry-instrumentation) loads, at interpreter start, one
``opentelemetry_distro`` (``OTEL_PYTHON_DISTRO`` picks one when several are installed), then one
``opentelemetry_configurator`` (``OTEL_PYTHON_CONFIGURATOR``), then every ``opentelemetry_instrumentor``.
The bridge registers all three under ``sentry_bridge`` / ``bridge_gunicorn``:

- :class:`BridgeDistro` sets defaults in the environment before anything reads it:
  ``OTEL_PYTHON_CONFIGURATOR=sentry_bridge`` (so this configurator is the one used), and
  ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` (opentelemetry-python resolves
  ``OTEL_TRACES_EXPORTER=otlp`` to its *gRPC* exporter when no protocol is set: the "gRPC trap");
- :class:`BridgeConfigurator` calls ``bridge.init()`` from the environment: one provider, one sampler,
  the OTLP/HTTP leg and the Sentry leg, the propagators, as the README's options table says; and the
  metrics leg, whose MeterProvider becomes the global one (so the other instrumentations' metrics, the
  HTTP client's say, are exported with the bridge's, as under opentelemetry-distro);
- ``bridge.servers.GunicornInstrumentor`` wraps the WSGI app gunicorn loads in ``BridgeMiddleware``.

Nothing here raises into the host program: a configuration error is logged (to stderr, even before
logging is configured) and the program runs untraced.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # the module opts out of typing
from opentelemetry.sdk._configuration import _BaseConfigurator

from bridge.errors import ConfigError

__all__ = ["BridgeDistro", "BridgeConfigurator", "DISTRO_NAME", "ENV_DEFAULTS"]

logger = logging.getLogger(__name__)

DISTRO_NAME = "sentry_bridge"
ENV_DEFAULTS = {
    "OTEL_PYTHON_CONFIGURATOR": DISTRO_NAME,
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
}


class BridgeDistro(BaseDistro):  # type: ignore[misc]
    """The ``sentry_bridge`` distro: environment defaults, read before the configurator runs."""

    def _configure(self, **kwargs: Any) -> None:
        for name, value in ENV_DEFAULTS.items():
            if not os.environ.get(name, "").strip():
                os.environ[name] = value
        _let_bridge_celery_instrument()


def _let_bridge_celery_instrument() -> None:
    """``bridge_celery`` turns OpenTelemetry's ``celery`` instrumentor on itself (bridge.frameworks.celery):
    that one is skipped so it is not loaded a second time (a no-op, but a WARNING in every worker's log)."""
    name = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
    disabled = [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
    if "bridge_celery" not in disabled and "celery" not in disabled:
        os.environ[name] = ",".join([*disabled, "celery"])


class BridgeConfigurator(_BaseConfigurator):  # type: ignore[misc]
    """The ``sentry_bridge`` configurator: ``bridge.init()`` from the environment."""

    def _configure(self, **kwargs: Any) -> None:
        try:
            from bridge.setup import init

            bridge = init()
            if bridge.metrics is not None:
                _set_global_meter_provider(bridge.metrics.meter_provider)
        except ConfigError as exc:
            logger.error("otel-sentry-bridge: not configured, nothing is traced: %s", exc)
        except Exception:
            logger.exception("otel-sentry-bridge: not configured, nothing is traced")


def _set_global_meter_provider(provider: Any) -> None:
    """Once, at start-up, and only if no other code set one (OpenTelemetry allows one global)."""
    from opentelemetry import metrics
    from opentelemetry.metrics._internal import _ProxyMeterProvider

    if isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
        metrics.set_meter_provider(provider)
