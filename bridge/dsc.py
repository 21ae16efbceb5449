"""The trace's dynamic sampling context (DSC): frozen from upstream when one came in, else ours.

Sentry's rule: the DSC is made once, by the head of the trace, and travels unchanged (``sentry-*``
entries of the ``baggage`` header); every envelope of the trace carries it in its header (``trace``).

``SentryPropagator.extract`` puts an :class:`Incoming` (the upstream's ``sentry-*`` baggage entries, and
whether the upstream deferred its sampling decision) into the OTel context under :data:`INCOMING_KEY`;
:func:`trace_dsc` makes the DSC from it, or from this service's :class:`DscHead` (the Sentry leg) when
the trace starts here. ``bridge.tracebook`` carries it from the context to every span of the trace.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol
from urllib.parse import quote, unquote

from opentelemetry import context as context_api

from bridge.sample_rand import sample_rand, stated_rate, valid_sample_rand

__all__ = [
    "INCOMING_KEY",
    "SENTRY_PREFIX",
    "Incoming",
    "DscHead",
    "incoming_from",
    "set_head",
    "clear_head",
    "current_head",
    "trace_dsc",
    "sentry_items",
    "merge_baggage",
]

INCOMING_KEY = context_api.create_key("otel-sentry-bridge.incoming-dsc")
SENTRY_PREFIX = "sentry-"


@dataclass(frozen=True)
class Incoming:
    """What an upstream Sentry SDK said about the trace.

    ``items``: its DSC (``sentry-*`` baggage entries, prefix removed, values decoded), empty when it sent
    none; ``deferred``: its ``sentry-trace`` had no sampled flag, so this service makes the decision.
    """

    items: Mapping[str, str]
    deferred: bool = False

    @property
    def sample_rand(self) -> Optional[float]:
        return valid_sample_rand(self.items.get("sample_rand"))

    def dsc(self, trace_id: int, sampled: bool, rate: Optional[float]) -> dict[str, str]:
        """The frozen DSC, completed where the upstream left something to this service."""
        dsc = dict(self.items)
        dsc.setdefault("trace_id", f"{trace_id:032x}")
        if self.deferred:  # our decision, so our rate (as Sentry's SDKs do)
            if rate is not None:
                dsc["sample_rate"] = repr(stated_rate(sampled, rate))
            dsc["sampled"] = "true" if sampled else "false"
        if valid_sample_rand(dsc.get("sample_rand")) is None:
            dsc["sample_rand"] = sample_rand(trace_id, sampled, _rate(dsc.get("sample_rate")))
        return dsc


def _rate(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def incoming_from(context: Optional[context_api.Context]) -> Optional[Incoming]:
    value = context_api.get_value(INCOMING_KEY, context)
    return value if isinstance(value, Incoming) else None


class DscHead(Protocol):
    """Who states this service's own DSC (the Sentry leg): its rate, and the DSC of a trace it heads."""

    @property
    def sample_rate(self) -> float: ...

    def head_dsc(self, trace_id: int, sampled: bool, root: Optional[Any]) -> dict[str, str]:
        """``root``: the local root span, or ``(transaction name, source)``, or None."""
        ...


_head_lock = threading.Lock()
_head: Optional[DscHead] = None


def set_head(head: DscHead) -> None:
    """Make ``head`` the one that states this process's DSC (the latest Sentry leg)."""
    global _head
    with _head_lock:
        _head = head


def clear_head(head: DscHead) -> None:
    global _head
    with _head_lock:
        if _head is head:
            _head = None


def current_head() -> Optional[DscHead]:
    return _head


def trace_dsc(
    trace_id: int, sampled: bool, incoming: Optional[Incoming], head: Optional[DscHead], root: Optional[Any] = None
) -> Optional[dict[str, str]]:
    """The DSC of a trace: the upstream's when it sent one, else the head's; None when neither exists."""
    rate = head.sample_rate if head is not None else None
    if incoming is not None and incoming.items:
        return incoming.dsc(trace_id, sampled, rate)
    if head is None:
        return None
    return head.head_dsc(trace_id, sampled, root)


# -- baggage ------------------------------------------------------------------------------------------
def _members(header: str) -> list[str]:
    return [member.strip() for member in header.split(",") if member.strip()]


def sentry_items(header: str) -> dict[str, str]:
    """The ``sentry-*`` entries of a ``baggage`` header: prefix removed, values percent-decoded."""
    items: dict[str, str] = {}
    for member in _members(header):
        key, sep, value = member.partition("=")
        key = key.strip()
        if sep and key.startswith(SENTRY_PREFIX) and len(key) > len(SENTRY_PREFIX):
            value = value.split(";", 1)[0].strip()  # W3C properties are not part of the value
            items[unquote(key[len(SENTRY_PREFIX) :])] = unquote(value)
    return items


def merge_baggage(existing: Optional[str], dsc: Mapping[str, str]) -> str:
    """``existing`` without its ``sentry-*`` entries, then ``dsc`` as ``sentry-*`` entries (others are kept)."""
    kept = [m for m in _members(existing or "") if not m.partition("=")[0].strip().startswith(SENTRY_PREFIX)]
    ours = [f"{SENTRY_PREFIX}{quote(key, safe='')}={quote(str(value), safe='')}" for key, value in dsc.items()]
    return ",".join(kept + ours)
