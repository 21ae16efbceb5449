"""Threads: an exception that ends a thread is reported by ``threading.excepthook`` (mechanism
``threading``, handled false), then the hook that was there runs (the traceback is still printed).
``SystemExit`` ends a thread quietly, as Python's own hook has it.

And as sentry-sdk's ``propagate_scope``: a thread started with ``Thread.start()`` gets a fork of its
starter's scopes (tags, user, contexts, extras, breadcrumbs so far); what it adds stays in the thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from bridge import integrations

__all__ = ["ThreadingIntegration"]


class ThreadingIntegration(integrations.Integration):
    identifier = "threading"

    def __init__(self, propagate_scope: bool = True) -> None:
        self.propagate_scope = propagate_scope
        self.previous: Optional[Callable[[Any], Any]] = None
        self._hook: Optional[Callable[[Any], Any]] = None
        self._original_start: Optional[Callable[..., Any]] = None

    def setup(self) -> None:
        previous = threading.excepthook
        self.previous = previous

        def bridge_thread_excepthook(args: Any) -> Any:
            try:
                value = args.exc_value
                if value is not None and not isinstance(value, SystemExit) and self._hook is not None:
                    from bridge.capturing import capture_event

                    capture_event(exc=value, handled=False, mechanism="threading", level="error")
            except Exception:
                pass  # capture_event never raises; this is for the interpreter's teardown
            return previous(args)

        self._hook = bridge_thread_excepthook
        threading.excepthook = bridge_thread_excepthook
        if self.propagate_scope:
            self._patch_start()

    def _patch_start(self) -> None:
        from bridge import scopes

        original = threading.Thread.start
        self._original_start = original

        def start(thread: threading.Thread, *args: Any, **kwargs: Any) -> Any:
            try:
                isolation = scopes.get_isolation_scope().fork()
                current = scopes.get_current_scope()
                run = thread.run

                def run_in_scopes(*run_args: Any, **run_kwargs: Any) -> Any:
                    # Set and left set: the thread's context ends with it, and its excepthook (which runs
                    # after run() returns) must still see the thread's scopes.
                    scopes.enter(isolation, current.fork() if current is not None else None)
                    return run(*run_args, **run_kwargs)

                thread.run = run_in_scopes  # type: ignore[method-assign]
            except Exception:
                pass
            return original(thread, *args, **kwargs)

        threading.Thread.start = start  # type: ignore[method-assign,assignment]

    def teardown(self) -> None:
        if threading.excepthook is self._hook and self.previous is not None:
            threading.excepthook = self.previous
        if self._original_start is not None:
            threading.Thread.start = self._original_start  # type: ignore[method-assign]
            self._original_start = None
        self._hook = None
