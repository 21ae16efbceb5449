"""Dedupe: one exception object is reported once, however many paths see it (``logger.exception`` and then
the excepthook; a framework's handler and then the middleware). sentry-sdk keeps only the last exception it
saw; the bridge marks each reported exception object, so interleaved threads and requests dedupe too.
"""

from __future__ import annotations

import weakref
from typing import Optional

from bridge import integrations

__all__ = ["DedupeIntegration", "seen", "remember", "event_id_of"]

_MARK = "__otel_sentry_bridge_event_id__"
_unmarkable: weakref.WeakKeyDictionary[BaseException, str] = weakref.WeakKeyDictionary()


class DedupeIntegration(integrations.Integration):
    identifier = "dedupe"


def event_id_of(exc: BaseException) -> Optional[str]:
    """The event id ``exc`` was reported under, if it was."""
    found = getattr(exc, _MARK, None)
    if isinstance(found, str):
        return found
    try:
        return _unmarkable.get(exc)
    except TypeError:
        return None


def seen(exc: BaseException) -> bool:
    """Whether ``exc`` was reported already (and dedupe is on)."""
    return integrations.enabled("dedupe") and event_id_of(exc) is not None


def remember(exc: BaseException, event_id: str) -> None:
    try:
        setattr(exc, _MARK, event_id)
    except Exception:  # a type without __dict__
        try:
            _unmarkable[exc] = event_id
        except TypeError:
            pass
