"""Celery Beat schedule entries as Sentry cron monitors (``instrument(app, monitor_beat_tasks=True)``).

In the beat process, each entry it sends gets a slug (from the entry's name), a ``monitor_config`` (its
crontab, or its interval in whole minutes, and the app's timezone) and a new ``check_in_id``: beat sends
``in_progress`` and puts all three in the message's headers. On the worker, the run's end sends ``ok`` or
``error`` (a retry counts as ``error``, as with sentry-sdk) with the same id, the duration since beat sent it
and the run's trace. Runs whose messages carry no such headers are left alone.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Optional

from opentelemetry import trace as trace_api

__all__ = ["beat_slug", "patch_beat", "finish_beat_check_in", "started_by_beat"]

logger = logging.getLogger(__name__)

_SLUG_HEADER = "bridge-monitor-slug"
_CHECK_IN_HEADER = "bridge-monitor-check-in-id"
_CONFIG_HEADER = "bridge-monitor-config"
_STARTED_HEADER = "bridge-monitor-started"

_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def beat_slug(entry_name: str) -> str:
    """A Sentry monitor slug from a beat entry's name: lowercase, runs of other characters as ``-``, 50 at most."""
    slug = _SLUG_BAD.sub("-", entry_name.lower()).strip("-")[:50].strip("-")
    return slug if slug and not slug.isdigit() else f"beat-{slug}"[:50]


def _beat_config(schedule: Any, app: Any) -> Optional[dict[str, Any]]:
    from celery.schedules import crontab
    from celery.schedules import schedule as interval

    config: dict[str, Any]
    if isinstance(schedule, crontab):
        fields = (
            schedule._orig_minute,
            schedule._orig_hour,
            schedule._orig_day_of_month,
            schedule._orig_month_of_year,
            schedule._orig_day_of_week,
        )
        config = {"schedule": {"type": "crontab", "value": " ".join(str(field) for field in fields)}}
    elif isinstance(schedule, interval):
        seconds = int(schedule.seconds)
        if seconds < 60 or seconds % 60:
            logger.warning(
                "otel-sentry-bridge: a beat interval of %s s is not whole minutes; Sentry Crons cannot take it", seconds
            )
            return None
        minutes = seconds // 60
        unit, value = "minute", minutes
        for name, size in (("week", 10080), ("day", 1440), ("hour", 60)):
            if minutes % size == 0:
                unit, value = name, minutes // size
                break
        config = {"schedule": {"type": "interval", "value": value, "unit": unit}}
    else:
        return None
    timezone = getattr(getattr(app, "conf", None), "timezone", None)
    config["timezone"] = str(timezone or "UTC")
    return config


def patch_beat() -> Any:
    """Wrap ``celery.beat.Scheduler.apply_entry``; returns the original (to restore it)."""
    from celery.beat import Scheduler

    original = Scheduler.apply_entry

    def apply_entry(self: Any, entry: Any, producer: Any = None) -> Any:
        try:
            _start_beat_check_in(self, entry)
        except Exception:
            logger.warning("otel-sentry-bridge: could not start a beat check-in", exc_info=True)
        return original(self, entry, producer)

    Scheduler.apply_entry = apply_entry
    return original


def _start_beat_check_in(scheduler: Any, entry: Any) -> None:
    from bridge import setup
    from bridge.sentry.checkins import check_in_payload
    from bridge.sentry.context import event_id

    slug = beat_slug(str(entry.name))
    config = _beat_config(entry.schedule, scheduler.app)
    check_in_id = event_id()
    headers = dict(entry.options.get("headers") or {})
    headers.update(
        {
            _SLUG_HEADER: slug,
            _CHECK_IN_HEADER: check_in_id,
            _STARTED_HEADER: repr(time.time()),
            _CONFIG_HEADER: json.dumps(config) if config else "",
        }
    )
    entry.options["headers"] = headers
    bridge = setup.active()
    if bridge is not None and bridge.enabled and bridge.sentry is not None:
        payload = check_in_payload(check_in_id=check_in_id, slug=slug, status="in_progress", config=config)
        bridge.sentry.send_check_in(payload)


def _header(request: Any, name: str) -> Optional[str]:
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(name) if isinstance(headers, Mapping) else None
    return value if isinstance(value, str) and value else None


def started_by_beat(task: Any) -> bool:
    """Whether this run was sent by a monitored beat (its headers name a check-in): cheap, for every task."""
    request = getattr(task, "request", None)
    return bool(_header(request, _CHECK_IN_HEADER))


def finish_beat_check_in(task: Any, span: Optional[trace_api.Span], status: str) -> None:
    """On the worker: the final check-in of a run that beat started (its headers say so)."""
    request = getattr(task, "request", None)
    slug = _header(request, _SLUG_HEADER)
    check_in_id = _header(request, _CHECK_IN_HEADER)
    if not slug or not check_in_id:
        return
    from bridge import setup
    from bridge.sentry.checkins import check_in_payload

    bridge = setup.active()
    if bridge is None or not bridge.enabled or bridge.sentry is None:
        return
    started = _header(request, _STARTED_HEADER)
    config_text = _header(request, _CONFIG_HEADER)
    context = span.get_span_context() if span is not None else trace_api.INVALID_SPAN_CONTEXT
    payload = check_in_payload(
        check_in_id=check_in_id,
        slug=slug,
        status=status,
        duration=time.time() - float(started) if started else None,
        config=json.loads(config_text) if config_text else None,
        trace_id=context.trace_id if context.is_valid else None,
        span_id=context.span_id if context.is_valid else None,
    )
    bridge.sentry.send_check_in(payload, span if context.is_valid else None)


