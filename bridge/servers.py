"""``GunicornInstrumentor``: under ``opentelemetry-instrument``, the app gunicorn serves is wrapped for you.

OpenTelemetry has no auto-instrumentation for a plain WSGI app (its WSGI middleware must be added in
code). With the bridge's distro, ``opentelemetry-instrument gunicorn app:app`` needs no code change:
this instrumentor (entry point ``bridge_gunicorn`` in ``opentelemetry_instrumentor``; switch it off with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=bridge_gunicorn``) patches ``gunicorn.app.base.BaseApplication.wsgi``
so the app each worker loads (or the master, with ``--preload``) is returned inside ``BridgeMiddleware``:
one SERVER span per request, errors to both backends, whatever the framework.

It wraps only when the bridge configured the process (its configurator ran ``bridge.init()``): under
another configurator the app is left alone, so there is never a second tracer provider.
An app that is already a ``BridgeMiddleware`` is not wrapped twice.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from typing import Any, Callable, Optional

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]  # the module opts out of typing

__all__ = ["GunicornInstrumentor", "wrap_for_bridge"]

logger = logging.getLogger(__name__)

_CACHE_ATTR = "_bridge_wrapped_app"


def wrap_for_bridge(app: Any) -> Any:
    """``BridgeMiddleware(app)`` when the bridge configured this process; ``app`` itself otherwise."""
    from bridge import setup
    from bridge.wsgi import BridgeMiddleware

    if isinstance(app, BridgeMiddleware) or not callable(app):
        return app
    if setup.active() is None:
        logger.info(
            "otel-sentry-bridge: the app gunicorn loads is not wrapped: the bridge did not configure this "
            "process (OTEL_PYTHON_CONFIGURATOR is not sentry_bridge)"
        )
        return app
    return BridgeMiddleware(app)


class GunicornInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    _original: Optional[Callable[..., Any]] = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("gunicorn >= 20",)

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from gunicorn.app.base import BaseApplication
        except ImportError:
            logger.debug("otel-sentry-bridge: gunicorn is not installed; nothing to instrument")
            return
        original = BaseApplication.wsgi
        if getattr(original, "_bridge_patched", False):
            return

        @functools.wraps(original)
        def wsgi(application: Any) -> Any:
            app = original(application)
            cached = getattr(application, _CACHE_ATTR, None)
            if cached is not None and cached[0] is app:
                return cached[1]
            try:
                wrapped = wrap_for_bridge(app)
            except Exception:  # never keep gunicorn from serving
                logger.warning("otel-sentry-bridge: could not wrap the app gunicorn loaded", exc_info=True)
                wrapped = app
            setattr(application, _CACHE_ATTR, (app, wrapped))
            return wrapped

        wsgi._bridge_patched = True  # type: ignore[attr-defined]
        type(self)._original = original
        BaseApplication.wsgi = wsgi

    def _uninstrument(self, **kwargs: Any) -> None:
        original = type(self)._original
        if original is None:
            return
        from gunicorn.app.base import BaseApplication

        BaseApplication.wsgi = original
        type(self)._original = None
