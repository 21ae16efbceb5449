"""The bridge's configuration for this project: the environment, plus a ``before_send`` filter."""

from __future__ import annotations

from typing import Any, Optional

import bridge


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> Optional[dict[str, Any]]:
    """Drop ``DisallowedHost`` errors: Host-header probes by scanners are noise, not bugs.

    The bridge records no failure for them (Django answers them with its own 400), so this is a second
    line of defence, e.g. against code that catches one and calls ``bridge.capture_exception()``.
    """
    exc_info = hint.get("exc_info")
    if exc_info and type(exc_info[1]).__name__ == "DisallowedHost":
        return None
    return event


def init_bridge(**options: Any) -> bridge.Bridge:
    """``bridge.init()`` from ``OTEL_*`` and ``SENTRY_*``; keyword arguments override (tests use them)."""
    options.setdefault("service_name", "django-example")
    return bridge.init(before_send=before_send, **options)
