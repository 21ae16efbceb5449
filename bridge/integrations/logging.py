"""Logging, on by default, as sentry-sdk's ``LoggingIntegration``: records at ``level`` (INFO) and above
become breadcrumbs, records at ``event_level`` (ERROR) and above become events (``logger``, ``level``,
``logentry`` with message, params and formatted text, ``extra`` from the record's extra fields; with
``exc_info`` an ``exception`` with mechanism ``logging``, handled). ``None`` turns either off.

Like sentry-sdk it wraps ``logging.Logger.callHandlers``, so it sees every record a logger lets through,
whatever handlers the app configured (and ``logging.lastResort`` still prints when there are none). This is
not the OTLP log records' handler (``bridge.logs``): the two are separate. The bridge's and OpenTelemetry's
own loggers never become events or breadcrumbs (a transport that logs its failure must not feed itself);
``ignore_logger(name)`` adds others (fnmatch patterns, as sentry-sdk).
"""

from __future__ import annotations

import logging
import threading
from fnmatch import fnmatch
from typing import Any, Callable, Optional

from bridge import integrations
from bridge.sentry.frames import current_stack
from bridge.sentry.values import safe_value

__all__ = ["LoggingIntegration", "EventHandler", "BreadcrumbHandler", "ignore_logger", "unignore_logger"]

DEFAULT_LEVEL = logging.INFO
DEFAULT_EVENT_LEVEL = logging.ERROR
_OWN_LOGGERS = ("bridge", "bridge.*", "opentelemetry", "opentelemetry.*", "otel_sentry_bridge*")
# sentry-sdk's defaults, and django.server (runserver's access log: a 500 would be a second event; sentry-sdk's
# Django integration, on whenever Django is installed, ignores it too)
_ignored: set[str] = {"sentry_sdk.errors", "urllib3.connectionpool", "urllib3.connection", "django.server"}
_LEVELS = {
    logging.NOTSET: "notset", logging.DEBUG: "debug", logging.INFO: "info",
    logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "fatal",
}  # fmt: skip
_EVENT_LEVELS = {"debug", "info", "warning", "error", "fatal"}
_COMMON_RECORD_ATTRS = frozenset(
    (
        "args", "created", "exc_info", "exc_text", "filename", "funcName", "levelname", "levelno", "linenno",
        "lineno", "message", "module", "msecs", "msg", "name", "pathname", "process", "processName",
        "relativeCreated", "stack", "tags", "taskName", "thread", "threadName", "stack_info",
    )
)  # fmt: skip
_inside = threading.local()


_verdicts: dict[str, bool] = {}  # logger name -> ignored (loggers are few; fnmatch per record is not free)


def ignore_logger(name: str) -> None:
    """Records of logger ``name`` (an fnmatch pattern) never become events or breadcrumbs."""
    _ignored.add(name)
    _verdicts.clear()


def unignore_logger(name: str) -> None:
    _ignored.discard(name)
    _verdicts.clear()


def _ignored_name(name: str) -> bool:
    verdict = _verdicts.get(name)
    if verdict is None:
        stripped = name.strip()
        verdict = any(fnmatch(stripped, pattern) for pattern in (*_OWN_LOGGERS, *_ignored))
        if len(_verdicts) < 10_000:
            _verdicts[name] = verdict
    return verdict


def event_level(record: logging.LogRecord) -> str:
    return _LEVELS.get(record.levelno, record.levelname.lower() if record.levelname else "")


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    found = {
        key: value
        for key, value in vars(record).items()
        if key not in _COMMON_RECORD_ATTRS and not (isinstance(key, str) and key.startswith("_"))
    }
    if not found:
        return found
    cleaned = safe_value(found)
    return cleaned if isinstance(cleaned, dict) else {}


def _message(record: logging.LogRecord) -> str:
    """The formatted message; the raw message when ``msg % args`` fails (the record is still reported)."""
    try:
        return record.getMessage()
    except Exception:
        try:
            return str(record.msg)
        except Exception:
            return "<unprintable log message>"


class EventHandler(logging.Handler):
    """Records → Sentry events (attach it yourself only when the integration is off)."""

    def emit(self, record: logging.LogRecord) -> None:
        from bridge.capturing import capture_event

        level = event_level(record)
        formatted = _message(record)
        params = record.args if isinstance(record.args, (tuple, list, dict)) else ()
        fields = {
            "logger": record.name,
            "logentry": {"message": safe_value(str(record.msg)), "formatted": formatted, "params": safe_value(params)},
            "extra": _extra(record),
        }
        exc_info = record.exc_info
        chosen = level if level in _EVENT_LEVELS else None
        if exc_info and exc_info[0] is not None and isinstance(exc_info[1], BaseException):
            capture_event(exc=exc_info[1], level=chosen, handled=True, mechanism="logging", fields=fields)
        else:
            # exc_info=True outside any except block, or stack_info=True: the stack of the logging call,
            # as sentry-sdk sends it (a current thread's stacktrace)
            stack = current_stack() if (exc_info and exc_info[0] is None) or record.stack_info else None
            capture_event(message=formatted, level=chosen or "info", fields=fields, stack=stack)


class BreadcrumbHandler(logging.Handler):
    """Records → breadcrumbs on the isolation scope."""

    def emit(self, record: logging.LogRecord) -> None:
        from bridge import scopes

        crumb = {
            "type": "log",
            "level": event_level(record),
            "category": record.name,
            "message": _message(record),
            "timestamp": record.created,
            "data": _extra(record),
        }
        scopes.get_isolation_scope().add_breadcrumb(crumb, hint={"log_record": record})


class LoggingIntegration(integrations.Integration):
    """``LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)``; ``None`` turns one off."""

    identifier = "logging"

    def __init__(
        self,
        level: Optional[int] = DEFAULT_LEVEL,
        event_level: Optional[int] = DEFAULT_EVENT_LEVEL,
        **ignored: Any,  # sentry-sdk's sentry_logs_level / capture_sentry_logs: OTLP logs are bridge.logs'
    ) -> None:
        self.breadcrumbs = BreadcrumbHandler(level=level) if level is not None else None
        self.events = EventHandler(level=event_level) if event_level is not None else None
        levels = [handler.level for handler in (self.breadcrumbs, self.events) if handler is not None]
        self.threshold = min(levels) if levels else logging.CRITICAL + 1000

    def handle(self, record: logging.LogRecord) -> None:
        if record.levelno < self.threshold or getattr(_inside, "active", False) or _ignored_name(record.name):
            return
        _inside.active = True
        try:
            if self.events is not None and record.levelno >= self.events.level:
                self.events.emit(record)
            if self.breadcrumbs is not None and record.levelno >= self.breadcrumbs.level:
                self.breadcrumbs.emit(record)
        except Exception:
            pass  # never into the app; and never a log record of our own from here (it would come back)
        finally:
            _inside.active = False

    def setup(self) -> None:
        global _active
        _active = self
        _patch()

    def teardown(self) -> None:
        global _active
        if _active is self:
            _active = None


_active: Optional[LoggingIntegration] = None
_original: Optional[Callable[..., Any]] = None


def _patch() -> None:
    global _original
    if _original is not None:
        return
    original = logging.Logger.callHandlers
    _original = original

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> Any:
        try:
            return original(self, record)
        finally:
            integration = _active
            if integration is not None:
                integration.handle(record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
