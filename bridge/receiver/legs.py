"""One Sentry leg per DSN for ``serve``: the in-process leg, fed by decoded spans, with a gauged queue.

The same ``SentryLeg`` (assembler → converter → envelope → transport) as the middleware's; ``serve`` only
sets its bounds and counts the envelopes waiting in the transport's queue, so that a full queue turns into
HTTP 429 for the sender instead of silent drops.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Optional, Union

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from bridge.config import Options
from bridge.sentry.assemble import Assembler
from bridge.sentry.dsn import Dsn
from bridge.sentry.envelope import Envelope
from bridge.sentry.leg import SentryLeg
from bridge.sentry.transport import Build, Transport
from bridge.version import __version__

__all__ = ["GaugedTransport", "LegDestination", "build_leg"]


class GaugedTransport(Transport):
    """The transport, counting what was queued and not yet built (``pending``)."""

    def __init__(self, dsn: Dsn, *, queue_size: int, client: str) -> None:
        super().__init__(dsn, queue_size=queue_size, client=client)
        self.queue_size = queue_size
        self._pending = 0
        self._gauge = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def _count(self, delta: int) -> None:
        with self._gauge:
            self._pending += delta

    def submit(self, category: str, build: Build) -> bool:
        self._count(1)

        def counted() -> Union[None, Envelope, Sequence[Envelope]]:
            try:
                return build()
            finally:
                self._count(-1)

        accepted = super().submit(category, counted)
        if not accepted:
            self._count(-1)
        return accepted


def _weigh(span: ReadableSpan) -> int:
    return int(getattr(span, "weight", 0))


class LegDestination:
    """A ``SentryLeg`` seen by the sink: feed, expire, saturation, shutdown."""

    def __init__(self, leg: SentryLeg, transport: GaugedTransport) -> None:
        self.leg = leg
        self.transport = transport

    def on_end(self, span: ReadableSpan) -> None:
        self.leg.on_end(span)

    def expire(self) -> None:
        self.leg.expire()

    def saturated(self) -> bool:
        return self.transport.pending >= self.transport.queue_size

    def fill(self) -> float:
        """How full the queue to Sentry is, 0 to 1 (per-sender limits start at a threshold of it)."""
        return self.transport.pending / max(1, self.transport.queue_size)

    @property
    def buffered(self) -> int:
        return self.leg.assembler.buffered

    @property
    def buffered_bytes(self) -> int:
        return self.leg.assembler.buffered_bytes

    def flush(self, timeout: float) -> bool:
        return self.leg.flush(timeout)

    def shutdown(self, timeout: float) -> None:
        self.leg.shutdown(timeout)


def build_leg(
    dsn: Dsn,
    *,
    environ: Mapping[str, str],
    ttl: float,
    root_delay: float,
    max_buffered_spans: int,
    max_buffered_bytes: Optional[int],
    queue_size: Optional[int] = None,
) -> LegDestination:
    """A leg for ``dsn`` with the Sentry settings of ``environ`` (``SENTRY_*`` only; OTel's do not apply)."""
    sentry_environ = {name: value for name, value in environ.items() if name.startswith("SENTRY_")}
    arguments: dict[str, object] = {"dsn": dsn.raw, "exporters": ("sentry",)}
    if queue_size is not None:
        arguments["sentry_queue_size"] = queue_size
    options = Options.resolve(arguments, sentry_environ)
    transport = GaugedTransport(
        dsn, queue_size=options.sentry_queue_size, client=f"otel-sentry-bridge-serve/{__version__}"
    )
    assembler = Assembler(
        ttl=ttl,
        root_delay=root_delay,
        max_buffered=max_buffered_spans,
        max_buffered_bytes=max_buffered_bytes,
        weigh=_weigh,
    )
    resource = Resource({"service.name": "otel-sentry-bridge-serve"})  # spans bring their own resources
    leg = SentryLeg(options, resource, transport=transport, assembler=assembler, in_process=False)
    return LegDestination(leg, transport)
