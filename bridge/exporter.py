"""``SentrySpanExporter``: the Sentry leg as an OpenTelemetry traces exporter named ``sentry``.

For OpenTelemetry setups the bridge does not configure (OpenTelemetry's own configurator, another distro,
or a hand-built ``TracerProvider``): ``OTEL_TRACES_EXPORTER=otlp,sentry`` (or
``BatchSpanProcessor(SentrySpanExporter())``) turns the spans of whatever instrumentation is active into
Sentry transactions, and their ``exception`` events into Sentry errors. It configures itself from the
``SENTRY_*`` variables (and ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``
and ``OTEL_TRACES_SAMPLER_ARG``, which the SDK's sampler reads too).

Differences from the bridge's own configuration (``bridge.init()``, or the ``sentry_bridge`` distro):
``SENTRY_TRACES_SAMPLE_RATE`` cannot drive a sampler it does not build (it is ignored, with a warning);
the OTLP settings are none of its business; and without the bridge's span processor an incoming Sentry
DSC is not seen by the envelopes (they state this service's DSC, still consistent with the decision).

Construction never raises (a configurator would abort the whole OpenTelemetry setup): a configuration
error is logged, kept in ``error``, and the exporter then reports every export as failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bridge.config import Options
from bridge.errors import ConfigError

__all__ = ["SentrySpanExporter", "exporter_environ"]

logger = logging.getLogger(__name__)

_NOT_OURS = ("OTEL_EXPORTER_OTLP_", "OTEL_TRACES_EXPORTER", "OTEL_BSP_")


def exporter_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that concern the Sentry exporter (the OTLP ones and the exporter list do not)."""
    kept = {name: value for name, value in environ.items() if not name.startswith(_NOT_OURS)}
    if kept.pop("SENTRY_TRACES_SAMPLE_RATE", None) is not None and "OTEL_TRACES_SAMPLER" not in kept:
        logger.warning(
            "otel-sentry-bridge: SENTRY_TRACES_SAMPLE_RATE has no effect on the 'sentry' exporter under another "
            "configurator; set OTEL_TRACES_SAMPLER=parentbased_traceidratio and OTEL_TRACES_SAMPLER_ARG instead "
            "(or use the sentry_bridge distro)"
        )
    return kept


class SentrySpanExporter(SpanExporter):
    """Sentry transactions and errors from finished spans. ``SentrySpanExporter(dsn=..., environment=...)``
    overrides the environment, with the option names of ``bridge.init()``."""

    def __init__(self, **options: Any) -> None:
        self.error: Optional[ConfigError] = None
        self.leg: Any = None  # bridge.sentry.leg.SentryLeg
        try:
            resolved = Options.resolve({**options, "exporters": ("sentry",)}, exporter_environ(os.environ))
            self._timeout = resolved.shutdown_timeout
            from bridge.sentry.leg import SentryLeg
            from bridge.setup import build_resource

            self.leg = SentryLeg(resolved, build_resource(resolved))
        except ConfigError as exc:
            self.error = exc
            logger.error("otel-sentry-bridge: the 'sentry' traces exporter is off: %s", exc)
        except Exception:
            logger.exception("otel-sentry-bridge: the 'sentry' traces exporter could not start; it is off")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        leg = self.leg
        if leg is None:
            return SpanExportResult.FAILURE
        try:
            for span in spans:
                leg.on_end(span)
            # The batch processor's force_flush ends with this export: what it produced goes out now.
            return SpanExportResult.SUCCESS if leg.flush(self._timeout) else SpanExportResult.FAILURE
        except Exception:
            logger.warning("otel-sentry-bridge: the 'sentry' exporter could not take a batch", exc_info=True)
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self.leg is None else bool(self.leg.flush(timeout_millis / 1000))

    def shutdown(self) -> None:
        if self.leg is not None:
            try:
                self.leg.shutdown(self._timeout)
            except Exception:
                logger.warning("otel-sentry-bridge: the 'sentry' exporter did not shut down cleanly", exc_info=True)
            self.leg = None
