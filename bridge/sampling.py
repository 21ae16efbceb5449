"""The one sampler of both outputs, built from ``Options``, aware of Sentry's deferred decisions.

A Sentry SDK that does not trace (a browser with errors only, "tracing without performance") sends
``sentry-trace: {trace_id}-{span_id}`` with no sampled flag: the decision is deferred to the receiver.
OpenTelemetry's ``ParentBased`` would read the missing flag as "not sampled" and drop every such trace,
so for a remote parent that is not sampled the bridge asks :class:`DeferredAware` instead: when the
upstream deferred, this service decides as a root does (by the upstream's ``sample_rand`` when it sent
one, ``sample_rand < rate`` as Sentry's SDKs do; else by the trace id); otherwise it drops, as
``ParentBased`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from bridge.config import Options
from bridge.dsc import incoming_from

__all__ = ["DeferredAware", "build_sampler", "sampler_rate"]


def sampler_rate(options: Options) -> float:
    """The rate the sampler applies to the traces it decides (the DSC's ``sample_rate``)."""
    if options.sampler.endswith("always_off"):
        return 0.0
    if options.sampler.endswith("traceidratio"):
        return 1.0 if options.sampler_arg is None else options.sampler_arg
    return 1.0


class DeferredAware(Sampler):
    """For a remote parent that is not sampled: decide here if the upstream deferred, else drop."""

    def __init__(self, root: Sampler, rate: float) -> None:
        self._root = root
        self._rate = rate

    def should_sample(
        self,
        parent_context: Optional[Context],
        trace_id: int,
        name: str,
        kind: Optional[SpanKind] = None,
        attributes: Attributes = None,
        links: Optional[Sequence[Link]] = None,
        trace_state: Optional[TraceState] = None,
    ) -> SamplingResult:
        incoming = incoming_from(parent_context)
        if incoming is None or not incoming.deferred:
            return ALWAYS_OFF.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        rand = incoming.sample_rand
        if rand is None:
            return self._root.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        sampled = rand < self._rate
        parent_state = get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(
            Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP,
            attributes if sampled else None,
            parent_state,
        )

    def get_description(self) -> str:
        return f"DeferredAware{{{self._root.get_description()}}}"


def build_sampler(options: Options) -> Sampler:
    name, arg = options.sampler, options.sampler_arg
    ratio = 1.0 if arg is None else arg
    base = name.removeprefix("parentbased_")
    root: Sampler = ALWAYS_ON
    if base == "always_off":
        root = ALWAYS_OFF
    elif base == "traceidratio":
        root = TraceIdRatioBased(ratio)
    if not name.startswith("parentbased_"):
        return root
    return ParentBased(root, remote_parent_not_sampled=DeferredAware(root, sampler_rate(options)))
