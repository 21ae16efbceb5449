"""Sentry cron check-ins: the ``check_in`` envelope item (data category ``monitor``).

The payload follows Sentry's documented check-in schema (develop.sentry.dev, "Check-Ins", and Relay's
``relay-monitors``): ``check_in_id`` (32 hex digits, one per run), ``monitor_slug``, ``status``
(``in_progress``, ``ok``, ``error``), ``duration`` in seconds (final check-ins only), ``environment``,
``release``, ``monitor_config`` (a crontab or interval ``schedule``, ``checkin_margin`` and
``max_runtime`` in minutes, ``timezone``) and ``contexts.trace`` (the run's trace, so Sentry links the
check-in to the run's errors). Pure functions: the Sentry leg queues what they build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Optional, Union

from bridge.sentry.envelope import Envelope, Item

__all__ = [
    "CHECK_IN_STATUSES",
    "INTERVAL_UNITS",
    "MAX_SLUG_LENGTH",
    "check_in_envelope",
    "check_in_payload",
    "monitor_config",
    "slug_problem",
]

MAX_SLUG_LENGTH: Final = 50  # Relay truncates longer slugs: a different monitor than the one named
MAX_ENVIRONMENT_LENGTH: Final = 64  # Relay refuses check-ins with longer environments
CHECK_IN_STATUSES: Final = ("in_progress", "ok", "error")
INTERVAL_UNITS: Final = ("year", "month", "week", "day", "hour", "minute")
_SLUG: Final = re.compile(r"[a-z0-9_-]+")
_CRONTAB_FIELD: Final = re.compile(r"[0-9A-Za-z*/,\-?LW#]+")

Schedule = Union[str, tuple[int, str]]  # a crontab line, or (every N, unit)


def slug_problem(slug: object) -> Optional[str]:
    """Why Sentry would refuse (or silently rename) this monitor slug; None when it is fine."""
    if not isinstance(slug, str):
        return f"a monitor slug must be a string, not {type(slug).__name__}"
    if not slug:
        return "a monitor slug must not be empty"
    if len(slug) > MAX_SLUG_LENGTH:
        return f"a monitor slug has at most {MAX_SLUG_LENGTH} characters (this one has {len(slug)})"
    if not _SLUG.fullmatch(slug):
        return "a monitor slug holds only lowercase letters, digits, '-' and '_' (Sentry slugifies anything else)"
    if slug.isdigit():
        return "a monitor slug must not be digits only"
    return None


def _minutes(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise ValueError(f"{name}={value!r}: expected a whole number of minutes >= 0")
    return int(value)


def monitor_config(
    schedule: Optional[Schedule],
    *,
    checkin_margin: Optional[int] = None,
    max_runtime: Optional[int] = None,
    timezone: Optional[str] = None,
) -> Optional[dict[str, Any]]:
    """The ``monitor_config`` of a schedule, or None without one. Raises ValueError naming a bad value.

    ``schedule``: a crontab line (``"*/5 * * * *"``) or ``(value, unit)`` with ``unit`` one of
    ``INTERVAL_UNITS`` (``(10, "minute")``).
    """
    if schedule is None:
        if checkin_margin is not None or max_runtime is not None or timezone is not None:
            raise ValueError("checkin_margin, max_runtime and timezone need a schedule")
        return None
    config: dict[str, Any]
    if isinstance(schedule, str):
        fields = schedule.split()
        if len(fields) != 5 or not all(_CRONTAB_FIELD.fullmatch(field) for field in fields):
            raise ValueError(f"schedule={schedule!r}: expected a crontab line of five fields, like '*/5 * * * *'")
        config = {"schedule": {"type": "crontab", "value": " ".join(fields)}}
    elif isinstance(schedule, (tuple, list)) and len(schedule) == 2:
        value, unit = schedule
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or unit not in INTERVAL_UNITS:
            raise ValueError(
                f"schedule={schedule!r}: expected (a whole number > 0, one of {', '.join(INTERVAL_UNITS)})"
            )
        config = {"schedule": {"type": "interval", "value": value, "unit": unit}}
    else:
        raise ValueError(f"schedule={schedule!r}: expected a crontab line or (value, unit)")
    if checkin_margin is not None:
        config["checkin_margin"] = _minutes("checkin_margin", checkin_margin)
    if max_runtime is not None:
        config["max_runtime"] = _minutes("max_runtime", max_runtime)
    if timezone is not None:
        if not isinstance(timezone, str) or not timezone.strip():
            raise ValueError(f"timezone={timezone!r}: expected a tz database name like 'Europe/Vienna'")
        config["timezone"] = timezone.strip()
    return config


def check_in_payload(
    *,
    check_in_id: str,
    slug: str,
    status: str,
    duration: Optional[float] = None,
    config: Optional[Mapping[str, Any]] = None,
    trace_id: Optional[int] = None,
    span_id: Optional[int] = None,
    environment: Optional[str] = None,
    release: Optional[str] = None,
) -> dict[str, Any]:
    """The JSON payload of one ``check_in`` item."""
    payload: dict[str, Any] = {"check_in_id": check_in_id, "monitor_slug": slug, "status": status}
    if duration is not None and status != "in_progress":
        payload["duration"] = max(0.0, float(duration))
    if environment:
        payload["environment"] = environment[:MAX_ENVIRONMENT_LENGTH]
    if release:
        payload["release"] = release
    if config:
        payload["monitor_config"] = dict(config)
    if trace_id:
        trace: dict[str, str] = {"trace_id": f"{trace_id:032x}"}
        if span_id:
            trace["span_id"] = f"{span_id:016x}"
        payload["contexts"] = {"trace": trace}
    return payload


def check_in_envelope(payload: Mapping[str, Any], dsc: Optional[Mapping[str, str]] = None) -> Envelope:
    """One check-in in its own envelope; ``dsc`` (the run's trace) goes into the header as for events."""
    headers: dict[str, Any] = {}
    if dsc:
        headers["trace"] = dict(dsc)
    return Envelope(headers, [Item.json("check_in", dict(payload))])
