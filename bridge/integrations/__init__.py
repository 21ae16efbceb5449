"""sentry-sdk's default integrations, under its names: logging, excepthook, threading, dedupe (and atexit,
which is ``init()``'s own flush at exit). All are on by default; ``default_integrations=False`` turns them
off, ``disabled_integrations=[...]`` turns some off, ``integrations=[LoggingIntegration(level=...)]``
configures one. Each lives in its own module here and is installed by ``init()`` (``install``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["Integration", "DEFAULT_IDENTIFIERS", "install", "enabled"]

logger = logging.getLogger(__name__)

DEFAULT_IDENTIFIERS = ("logging", "excepthook", "threading", "dedupe", "atexit")
_enabled: set[str] = set()


class Integration:
    """The base of the integrations (``identifier`` names one, as in sentry-sdk)."""

    identifier = ""

    def setup(self) -> None:
        """Install (idempotent)."""

    def teardown(self) -> None:
        """Uninstall (``shutdown()``, or an ``init()`` without it)."""


def enabled(identifier: str) -> bool:
    return identifier in _enabled


def _identifier(item: Any) -> str:
    if isinstance(item, str):
        return item
    return str(getattr(item, "identifier", "") or getattr(type(item), "identifier", ""))


def _defaults() -> dict[str, Integration]:
    from bridge.integrations.dedupe import DedupeIntegration
    from bridge.integrations.excepthook import ExcepthookIntegration
    from bridge.integrations.logging import LoggingIntegration
    from bridge.integrations.threading import ThreadingIntegration

    made: list[Integration] = [
        LoggingIntegration(),
        ExcepthookIntegration(),
        ThreadingIntegration(),
        DedupeIntegration(),
    ]
    return {item.identifier: item for item in made}


_installed: dict[str, Integration] = {}


def install(integrations: Iterable[Any], default_integrations: bool, disabled: Iterable[Any]) -> list[str]:
    """Install what the options ask for; uninstall the rest. Returns the identifiers now on."""
    wanted: dict[str, Integration] = _defaults() if default_integrations else {}
    for item in integrations:
        if isinstance(item, Integration):
            wanted[item.identifier] = item
    for item in disabled:
        wanted.pop(_identifier(item), None)
    for identifier, old in list(_installed.items()):
        if wanted.get(identifier) is not old:
            try:
                old.teardown()
            except Exception:
                logger.warning("otel-sentry-bridge: could not remove the %s integration", identifier, exc_info=True)
            del _installed[identifier]
    for identifier, item in wanted.items():
        if identifier in _installed:
            continue
        try:
            item.setup()
            _installed[identifier] = item
        except Exception:
            logger.warning("otel-sentry-bridge: could not install the %s integration", identifier, exc_info=True)
    _enabled.clear()
    _enabled.update(_installed)
    if default_integrations and "atexit" not in {_identifier(item) for item in disabled}:
        _enabled.add("atexit")  # init()'s own flush at exit (bridge.setup)
    return sorted(_enabled)


def uninstall() -> None:
    install((), False, ())
