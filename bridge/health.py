"""What the bridge delivered and lost, per leg: ``bridge.stats()`` (or ``Bridge.stats()``) returns a ``BridgeStats``.

Every span or event that does not reach its backend is counted in exactly one place:

- OTLP (``OtlpStats``): ``failed`` (an export that got no 2xx: refused, timed out, 4xx/5xx, after the
  exporter's own retries), ``dropped`` (the batch queue was full), ``abandoned`` (still queued when
  ``shutdown()``'s deadline came). ``exported + lost + queued`` is every sampled span that ended, give or
  take the one batch being exported at that moment.
- Sentry (``bridge.sentry.transport.TransportStats``): ``dropped`` by (reason, category), the same
  counts Sentry receives in client reports (``network_error``, ``send_error``, ``queue_overflow``,
  ``ratelimit_backoff``, ``sample_rate``, ``before_send``, ``buffer_overflow``, ``shutdown``...); an
  envelope answered 429 is counted by Sentry itself (``failed["rate_limited"]`` here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bridge.sentry.transport import TransportStats

__all__ = ["BridgeStats", "LogsStats", "MetricsStats", "OtlpStats", "TransportStats"]


@dataclass(frozen=True)
class OtlpStats:
    exported: int  # spans the collector answered with a 2xx
    failed: int  # spans in exports that failed (after the exporter's retries)
    dropped: int  # spans dropped because the batch queue was full
    abandoned: int  # spans still queued when shutdown's deadline came
    queued: int  # spans waiting in the batch queue now

    @property
    def lost(self) -> int:
        return self.failed + self.dropped + self.abandoned


@dataclass(frozen=True)
class LogsStats:
    """The OTLP logs leg (bridge.logs)."""

    exported: int  # log records the collector answered with a 2xx
    failed: int  # log records in exports that failed
    dropped: int = 0  # log records dropped because the batch queue was full
    abandoned: int = 0  # log records still queued when shutdown's deadline came
    queued: int = 0  # log records waiting in the batch queue now

    @property
    def lost(self) -> int:
        return self.failed + self.dropped + self.abandoned


@dataclass(frozen=True)
class MetricsStats:
    """The OTLP metrics leg (bridge.metrics): export requests, each carrying every metric collected then."""

    exported: int  # export requests the collector answered with a 2xx
    failed: int  # export requests that got no 2xx (their points are lost: cumulative ones come again next time)

    @property
    def lost(self) -> int:
        return self.failed


@dataclass(frozen=True)
class BridgeStats:
    otlp: Optional[OtlpStats]  # None when the OTLP leg is off
    sentry: Optional[TransportStats]  # None when the Sentry leg is off
    logs: Optional[LogsStats] = None  # None when OTEL_LOGS_EXPORTER has no otlp
    metrics: Optional[MetricsStats] = None  # None when OTEL_METRICS_EXPORTER has no otlp
