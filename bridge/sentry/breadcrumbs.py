"""Breadcrumbs: the bounded ring each scope keeps, and how a crumb is made (sentry-sdk's rules).

``add`` merges ``crumb`` and keyword fields, stamps ``timestamp`` (seconds) and ``type`` ("default"),
passes it through ``before_breadcrumb(crumb, hint)`` (None drops it; one that raises is logged once and the
crumb kept as it was), makes its values safe for JSON, and appends it; the oldest crumbs leave first.
Events get the crumbs of every scope layer merged, ordered by time, the last ``max_breadcrumbs`` of them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Callable, Optional

from bridge.sentry.values import safe_value

__all__ = ["Breadcrumbs", "BeforeBreadcrumb", "make_crumb", "merged", "DEFAULT_MAX_BREADCRUMBS"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BREADCRUMBS = 100
BeforeBreadcrumb = Callable[[dict[str, Any], dict[str, Any]], Optional[dict[str, Any]]]
_warned = [False]
_FIELDS = ("type", "category", "message", "level", "data", "timestamp", "event_id")
_LEVELS = {"fatal", "error", "warning", "info", "debug"}


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


def make_crumb(
    crumb: Optional[Mapping[str, Any]],
    hint: Optional[Mapping[str, Any]],
    fields: Mapping[str, Any],
    before_breadcrumb: Optional[BeforeBreadcrumb],
) -> Optional[dict[str, Any]]:
    """The crumb to keep, or None (empty, or dropped by ``before_breadcrumb``)."""
    made: dict[str, Any] = dict(crumb or ())
    made.update(fields)
    if not made:
        return None
    if made.get("timestamp") is None:
        made["timestamp"] = time.time()
    if made.get("type") is None:
        made["type"] = "default"
    if before_breadcrumb is not None:
        try:
            result = before_breadcrumb(made, dict(hint or ()))
        except Exception:
            if not _warned[0]:
                _warned[0] = True
                logger.warning("otel-sentry-bridge: before_breadcrumb raised; the breadcrumb is kept", exc_info=True)
            result = made
        if result is None:
            return None
        made = result if isinstance(result, dict) else made
    return _clean(made)


def _clean(crumb: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in crumb.items():
        if key not in _FIELDS or value is None:
            continue
        if key == "timestamp":
            out[key] = _seconds(value)
        elif key == "data":
            data = safe_value(value)
            out[key] = data if isinstance(data, dict) else {"value": data}
        elif key == "level":
            level = str(value).lower()
            out[key] = "warning" if level == "warn" else "fatal" if level == "critical" else level
            if out[key] not in _LEVELS:
                out.pop(key)
        else:
            out[key] = safe_value(value) if key == "message" else str(value)[:200]
    return out


class Breadcrumbs:
    """A ring of the latest crumbs; ``copy()`` for a forked scope."""

    __slots__ = ("_ring",)

    def __init__(self, limit: int = DEFAULT_MAX_BREADCRUMBS, crumbs: Iterable[dict[str, Any]] = ()) -> None:
        self._ring: deque[dict[str, Any]] = deque(crumbs, maxlen=max(0, limit))

    def append(self, crumb: dict[str, Any]) -> None:
        self._ring.append(crumb)

    def clear(self) -> None:
        self._ring.clear()

    def copy(self) -> Breadcrumbs:
        return Breadcrumbs(self._ring.maxlen or 0, self._ring)

    def __iter__(self) -> Any:
        return iter(list(self._ring))

    def __len__(self) -> int:
        return len(self._ring)


def merged(layers: Iterable[Breadcrumbs], limit: int) -> list[dict[str, Any]]:
    """The crumbs of every layer, oldest first, the last ``limit`` of them (each a copy)."""
    crumbs = [dict(crumb) for layer in layers for crumb in layer]
    crumbs.sort(key=lambda crumb: crumb.get("timestamp", 0.0))
    return crumbs[-limit:] if limit > 0 else []
