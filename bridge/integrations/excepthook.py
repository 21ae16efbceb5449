"""Uncaught exceptions: ``sys.excepthook`` reports them (mechanism ``excepthook``, handled false, level
error), then calls the hook that was there, so the traceback is still printed and the exit status does not
change. ``init()``'s exit hook then flushes within ``shutdown_timeout``. Not in an interactive shell (every
typo would be an event) unless ``always_run=True``, as sentry-sdk.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Callable, Optional

from bridge import integrations

__all__ = ["ExcepthookIntegration"]

Hook = Callable[[type[BaseException], BaseException, Optional[TracebackType]], Any]


class ExcepthookIntegration(integrations.Integration):
    identifier = "excepthook"

    def __init__(self, always_run: bool = False) -> None:
        self.always_run = always_run
        self.previous: Optional[Hook] = None
        self._hook: Optional[Hook] = None

    def setup(self) -> None:
        previous = sys.excepthook
        self.previous = previous

        def bridge_excepthook(kind: type[BaseException], value: BaseException, tb: Optional[TracebackType]) -> Any:
            try:
                if value is not None and (self.always_run or not hasattr(sys, "ps1")) and self._hook is not None:
                    from bridge.capturing import capture_event

                    capture_event(exc=value, handled=False, mechanism="excepthook", level="error")
            except Exception:
                pass  # capture_event never raises; this is for the interpreter's teardown
            return previous(kind, value, tb)

        self._hook = bridge_excepthook
        sys.excepthook = bridge_excepthook

    def teardown(self) -> None:
        if sys.excepthook is self._hook and self.previous is not None:
            sys.excepthook = self.previous
        self._hook = None
