"""Work that is not a request: ``bridge.trace`` (a span around a function or a block) and ``bridge.monitor``
(Sentry cron check-ins around a run).

``trace``: a span named after the function (``module.qualname``) or ``name``, with the Sentry op ``op``
(default ``function``). With no current span it is a local root, so the Sentry leg sends it as a
transaction; inside a request (or a task) it is a child span of it. An exception escaping it is recorded
through ``bridge.scope`` (ERROR status, an ``exception`` event, a Sentry error) and re-raised unchanged.

``monitor``: the same span (op ``monitor``) plus check-ins: ``in_progress`` when the run starts, ``ok`` or
``error`` with its duration when it ends, sharing one ``check_in_id``, carrying the run's trace; with a
``schedule`` each check-in also carries ``monitor_config`` (Sentry creates or updates the monitor).

Both work as decorators of sync and async functions and as context managers. Nothing here raises into the
caller: a slug Sentry would refuse, or a bad schedule, is logged (saying why) and the work runs as usual.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union, cast, overload

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from bridge.sentry.checkins import Schedule, check_in_payload, monitor_config, slug_problem
from bridge.sentry.context import event_id as new_check_in_id
from bridge.version import __version__

__all__ = ["trace", "monitor", "Traced", "Monitored", "TRACE_SCOPE"]

logger = logging.getLogger(__name__)

TRACE_SCOPE = "bridge.jobs"
F = TypeVar("F", bound=Callable[..., Any])


def _tracer() -> Optional[trace_api.Tracer]:
    """The active configuration's tracer for this module; None when the bridge is not configured."""
    from bridge import setup

    bridge = setup.active()
    if bridge is None or not bridge.enabled or bridge.provider is None:
        return None
    return bridge.provider.get_tracer(TRACE_SCOPE, __version__)


def _name_of(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return f"{module}.{qualname}" if module else str(qualname)


class _Run:
    """One span made current for the duration of a run; ``finish`` records an escaping exception."""

    __slots__ = ("span", "token", "mechanism")

    def __init__(self, name: str, op: str, attributes: dict[str, Any], mechanism: str) -> None:
        self.span: trace_api.Span = trace_api.INVALID_SPAN
        self.token: Optional[Token[context_api.Context]] = None
        self.mechanism = mechanism
        try:
            tracer = _tracer()
            if tracer is None:
                return
            self.span = tracer.start_span(name, attributes={"sentry.op": op, **attributes})
            self.token = context_api.attach(trace_api.set_span_in_context(self.span))
        except Exception:
            logger.warning("otel-sentry-bridge: could not start a span for %r; it runs untraced", name, exc_info=True)

    def finish(self, exc: Optional[BaseException]) -> None:
        if self.token is not None:
            token, self.token = self.token, None
            try:
                context_api.detach(token)
            except Exception:  # ended in another context than it started in: the span still ends
                logger.debug("otel-sentry-bridge: could not detach a span's context", exc_info=True)
        try:
            span = self.span
            if not span.get_span_context().is_valid:
                return
            if isinstance(exc, Exception):
                _record_failure(span, exc, self.mechanism)
            span.end()
        except Exception:
            logger.warning("otel-sentry-bridge: could not end a span", exc_info=True)


def _record_failure(span: trace_api.Span, exc: BaseException, mechanism: str) -> None:
    """ERROR status, ``error.type``, and the exception recorded through the scope (a Sentry error, unhandled)."""
    from bridge import scope as scope_module

    name = type(exc).__qualname__
    if span.is_recording():
        span.set_attribute("error.type", name)
        span.set_attribute("sentry.mechanism", mechanism)  # the Sentry error's mechanism type
        span.set_status(Status(StatusCode.ERROR, f"{name}: {exc}"))
    scope_module.record_exception(scope_module.current_scope(), span, exc, handled=False)


class _Wrapper:
    """What ``trace`` and ``monitor`` share: decorator of sync and async functions, and context manager."""

    def __init__(self, name: Optional[str]) -> None:
        self.name = name
        # The runs entered as a context manager, per context (thread or asyncio task): one object may be
        # entered again while it runs (recursion, concurrent tasks) and each exit ends its own run.
        self._runs: ContextVar[tuple[Any, ...]] = ContextVar(f"otel_sentry_bridge_runs_{id(self)}", default=())

    def _block_name(self) -> str:
        """The span's name when used as a context manager (no function to name it after)."""
        return self.name or "bridge.trace"

    def _start(self, name: str) -> Any:
        raise NotImplementedError

    def _end(self, run: Any, exc: Optional[BaseException]) -> None:
        raise NotImplementedError

    # -- context manager ---------------------------------------------------------------------------------
    def __enter__(self) -> trace_api.Span:
        run = self._start(self._block_name())
        self._runs.set((*self._runs.get(), run))
        return cast(trace_api.Span, run.span if isinstance(run, _Run) else run[0].span)

    def __exit__(
        self, kind: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        runs = self._runs.get()
        if runs:
            self._runs.set(runs[:-1])
            self._end(runs[-1], exc)

    # -- decorator --------------------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        name = self.name or _name_of(func)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                run = self._start(name)
                try:
                    result = await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)
                except BaseException as exc:
                    self._end(run, exc)
                    raise
                self._end(run, None)
                return result

            return cast(F, run_async)

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            run = self._start(name)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._end(run, exc)
                raise
            self._end(run, None)
            return result

        return cast(F, run_sync)


class Traced(_Wrapper):
    """``bridge.trace(name=..., op=...)``: a decorator and a context manager."""

    def __init__(
        self,
        name: Optional[str] = None,
        op: Optional[str] = None,
        *,
        attributes: Optional[dict[str, Any]] = None,
        mechanism: str = "trace",
    ) -> None:
        super().__init__(name)
        self.op = op or "function"
        self.attributes = dict(attributes or {})  # for surfaces built on trace (management commands)
        self.mechanism = mechanism

    def _start(self, name: str) -> _Run:
        return _Run(name, self.op, self.attributes, self.mechanism)

    def _end(self, run: _Run, exc: Optional[BaseException]) -> None:
        run.finish(exc)


@overload
def trace(func: F) -> F: ...


@overload
def trace(func: None = None, *, name: Optional[str] = None, op: Optional[str] = None) -> Traced: ...


def trace(func: Optional[F] = None, *, name: Optional[str] = None, op: Optional[str] = None) -> Union[F, Traced]:
    """``@bridge.trace``, ``@bridge.trace(name=..., op=...)`` or ``with bridge.trace(name=..., op=...):``.

    A span named after the function (``module.qualname``) or ``name``; a Sentry transaction (op ``op``,
    default ``function``) when nothing else is traced at the time, else a child span. An escaping
    exception is recorded (ERROR, a Sentry error) and re-raised.
    """
    if func is not None and callable(func):
        return Traced(name, op)(func)
    return Traced(name, op)


_warned_slugs: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned_slugs:
            return
        _warned_slugs.add(key)
    logger.warning(message, *args)


class Monitored(_Wrapper):
    """``bridge.monitor(slug, ...)``: check-ins around each run, as a decorator or a context manager."""

    def __init__(
        self,
        slug: str,
        *,
        schedule: Optional[Schedule] = None,
        checkin_margin: Optional[int] = None,
        max_runtime: Optional[int] = None,
        timezone: Optional[str] = None,
    ) -> None:
        super().__init__(None)
        self.slug = slug
        self.problem = slug_problem(slug)
        if self.problem is not None:
            _warn_once(
                f"slug:{slug!r}",
                "otel-sentry-bridge: monitor slug %r: %s; no check-ins are sent for it (the work still runs)",
                slug,
                self.problem,
            )
        self.config: Optional[dict[str, Any]] = None
        try:
            self.config = monitor_config(
                schedule, checkin_margin=checkin_margin, max_runtime=max_runtime, timezone=timezone
            )
        except ValueError as exc:
            _warn_once(
                f"config:{slug!r}:{exc}",
                "otel-sentry-bridge: monitor %r: %s; check-ins are sent without a monitor_config",
                slug,
                exc,
            )

    def _block_name(self) -> str:
        return str(self.slug)

    def _start(self, name: str) -> tuple[_Run, str, float]:
        check_in_id = new_check_in_id()
        attributes = {"monitor.slug": str(self.slug), "monitor.check_in_id": check_in_id}
        run = _Run(name, "monitor", attributes, "monitor")
        self._send(check_in_id, "in_progress", None, run.span)
        return run, check_in_id, time.monotonic()

    def _end(self, started: tuple[_Run, str, float], exc: Optional[BaseException]) -> None:
        run, check_in_id, start = started
        failed = isinstance(exc, Exception)
        self._send(check_in_id, "error" if failed else "ok", time.monotonic() - start, run.span)
        run.finish(exc)

    def _send(self, check_in_id: str, status: str, duration: Optional[float], span: trace_api.Span) -> None:
        if self.problem is not None:
            return
        try:
            from bridge import setup

            bridge = setup.active()
            leg = bridge.sentry if bridge is not None and bridge.enabled else None
            if leg is None:
                logger.debug("otel-sentry-bridge: no Sentry leg; check-in %s of %r not sent", status, self.slug)
                return
            context = span.get_span_context()
            payload = check_in_payload(
                check_in_id=check_in_id,
                slug=self.slug,
                status=status,
                duration=duration,
                config=self.config,
                trace_id=context.trace_id if context.is_valid else None,
                span_id=context.span_id if context.is_valid else None,
            )
            leg.send_check_in(payload, span if context.is_valid else None)
        except Exception:
            logger.warning("otel-sentry-bridge: could not send a check-in for %r", self.slug, exc_info=True)


def monitor(
    slug: str,
    *,
    schedule: Optional[Schedule] = None,
    checkin_margin: Optional[int] = None,
    max_runtime: Optional[int] = None,
    timezone: Optional[str] = None,
) -> Monitored:
    """Sentry cron check-ins around each run: ``@bridge.monitor("nightly-report")`` or ``with bridge.monitor(...)``.

    ``schedule``: a crontab line (``"0 3 * * *"``) or ``(value, unit)`` (``(10, "minute")``); with it each
    check-in carries ``monitor_config``, with ``checkin_margin`` and ``max_runtime`` in minutes and a tz
    database ``timezone``. A slug Sentry would refuse is logged and no check-ins are sent; the work runs.
    """
    return Monitored(slug, schedule=schedule, checkin_margin=checkin_margin, max_runtime=max_runtime, timezone=timezone)
