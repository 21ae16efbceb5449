"""Django management commands as Sentry transactions: one line opts in.

``settings.py``::

    INSTALLED_APPS = [..., "bridge.frameworks.django_commands.TraceCommands"]

(or call :func:`instrument` once, e.g. in ``manage.py``). Every command then runs inside a span named
``manage.py <command>`` (op ``django.command``, Sentry transaction source ``task``, attribute
``django.command``), a local root when nothing else is traced, so it reaches Sentry as a transaction and
OTLP as a trace; an exception escaping the command (a ``CommandError`` too) is recorded as a Sentry error
(mechanism ``django.command``, unhandled) and re-raised unchanged, so Django prints it and exits as before.
When ``bridge.init()`` has not run, the first command configures the bridge from the environment.
Long-running commands that serve or wait (``runserver``, ``shell``, ``dbshell``...) are left alone.

Plain scripts use ``bridge.trace`` directly. Django is imported lazily; nothing here raises into Django.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Collection
from typing import Any, Callable, Optional

__all__ = ["TraceCommands", "instrument", "uninstrument", "SKIPPED_COMMANDS", "command_name"]

logger = logging.getLogger(__name__)

# Commands that serve, wait for input or replace the process: a transaction of hours says nothing.
SKIPPED_COMMANDS = frozenset({"runserver", "runserver_plus", "testserver", "shell", "shell_plus", "dbshell"})

_lock = threading.Lock()
_original: list[Optional[Callable[..., Any]]] = [None]


def command_name(command: Any) -> str:
    """``django.core.management.commands.migrate`` → ``migrate`` (Django names a command after its module)."""
    module = type(command).__module__ or ""
    return module.rpartition(".")[2] or type(command).__name__


def _ensure_bridge() -> bool:
    from bridge import setup

    bridge = setup.active()
    if bridge is None:
        try:
            bridge = setup.init()
        except Exception:
            logger.warning("otel-sentry-bridge: init() from the environment failed; commands untraced", exc_info=True)
            return False
    return bridge.enabled


def instrument(skip: Collection[str] = SKIPPED_COMMANDS) -> None:
    """Trace every management command except ``skip``. Idempotent; never raises."""
    try:
        from django.core.management.base import BaseCommand

        from bridge.jobs import Traced
    except ImportError:
        logger.warning("otel-sentry-bridge: Django is not installed; management commands are not traced")
        return
    skipped = frozenset(skip)
    with _lock:
        if _original[0] is not None:
            return
        original = BaseCommand.execute
        _original[0] = original

        @functools.wraps(original)
        def execute(self: Any, *args: Any, **options: Any) -> Any:
            try:
                name = command_name(self)
                traced = None if name in skipped or not _ensure_bridge() else Traced(
                    f"manage.py {name}",
                    "django.command",
                    attributes={"django.command": name, "sentry.transaction_source": "task"},
                    mechanism="django.command",
                )
            except Exception:
                logger.warning("otel-sentry-bridge: could not trace a management command", exc_info=True)
                traced = None
            if traced is None:
                return original(self, *args, **options)
            with traced:
                return original(self, *args, **options)

        BaseCommand.execute = execute


def uninstrument() -> None:
    with _lock:
        original, _original[0] = _original[0], None
    if original is not None:
        from django.core.management.base import BaseCommand

        BaseCommand.execute = original


try:
    from django.apps import AppConfig
except ImportError:  # pragma: no cover - only the INSTALLED_APPS entry needs Django
    pass
else:

    class TraceCommands(AppConfig):  # type: ignore[misc]
        """The ``INSTALLED_APPS`` entry that turns tracing of management commands on."""

        name = "bridge.frameworks.django_commands"
        label = "otel_sentry_bridge_commands"
        verbose_name = "otel-sentry-bridge: management commands"

        def ready(self) -> None:
            instrument()
