"""Celery: tasks traced from the caller into the worker, on ``opentelemetry-instrumentation-celery``.

``instrument(app)`` (or, with no code, ``opentelemetry-instrument celery -A proj worker``: the
``bridge_celery`` instrumentor) turns on OpenTelemetry's Celery instrumentation (its span names and
attributes: a PRODUCER span ``apply_async/<task>`` in the caller's trace, a CONSUMER span ``run/<task>`` in
the worker continuing it through the message headers) and adds what the bridge needs:

- trace continuation from sentry-sdk producers: the worker extracts with the bridge's propagators, so
  ``sentry-trace``/``baggage`` headers continue the trace as ``traceparent`` does (W3C wins when both);
- one Sentry transaction per task: the converter names CONSUMER spans of Celery after the task (source
  ``task``, op ``queue.task.celery``, ``contexts.celery`` with task id, retries and queue; a retry is
  ``aborted``, as sentry-sdk reports it), so the attributes are set when the task starts, not only at its end;
- a failing task: its exception object is recorded through ``bridge.scope`` (full frames, Sentry mechanism
  ``celery``, handled false); exceptions the task declares in ``throws`` mark the run failed but send no
  error (sentry-sdk's rule). This replaces the instrumentation's own failure handler (which records the
  exception as text only);
- prefork: the legs restart in each forked child by themselves (``os.register_at_fork``); every child
  flushes when it exits (``worker_process_shutdown``), so ``--max-tasks-per-child`` recycling loses nothing;
- a child killed mid-task: the main process learns it (``WorkerLostError``); the task's spans died with the
  child, so the bridge records a replacement CONSUMER span (ERROR, the WorkerLostError) in the task's trace
  and counts the lost runs (``lost_runs()``, and a WARNING with the running count);
- a message that cannot be published (arguments the serializer refuses): the instrumentation would leave
  its PRODUCER span open and current; it is ended with the error instead;
- Celery Beat (``monitor_beat_tasks=True`` or ``OTEL_SENTRY_BRIDGE_CELERY_MONITOR_BEAT=true``): every beat
  schedule entry becomes a Sentry cron monitor (slug from the entry's name, its crontab or interval as
  ``monitor_config``): ``in_progress`` from beat when it sends the task, ``ok``/``error`` from the worker.

Celery and the instrumentation are imported lazily (the ``celery`` extra). Nothing here raises into Celery.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Mapping
from typing import Any, Optional

from opentelemetry import propagate
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import SpanKind, Status, StatusCode

from bridge.frameworks.celery_beat import finish_beat_check_in, started_by_beat

__all__ = ["instrument", "uninstrument", "BridgeCeleryInstrumentor", "lost_runs", "BEAT_ENV"]

logger = logging.getLogger(__name__)

BEAT_ENV = "OTEL_SENTRY_BRIDGE_CELERY_MONITOR_BEAT"

_lock = threading.Lock()
_state: dict[str, Any] = {"on": False, "beat": False, "send_task": None, "apply_entry": None}
_lost = [0]


def lost_runs() -> int:
    """Task runs whose worker child died mid-task in this process's pool (their own spans were lost)."""
    return _lost[0]


# -- turning it on -----------------------------------------------------------------------------------------


def instrument(app: Any = None, *, monitor_beat_tasks: Optional[bool] = None) -> None:
    """Trace Celery tasks (all apps of the process: Celery's signals are global). Idempotent; never raises.

    ``monitor_beat_tasks``: report beat schedule entries as Sentry cron monitors (default: the
    ``OTEL_SENTRY_BRIDGE_CELERY_MONITOR_BEAT`` variable, ``true``/``false``).
    """
    try:
        _instrument(monitor_beat_tasks)
    except Exception:
        logger.warning("otel-sentry-bridge: could not instrument Celery; tasks are not traced", exc_info=True)


def _instrument(monitor_beat_tasks: Optional[bool]) -> None:
    from celery import Celery, signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    if monitor_beat_tasks is None:
        monitor_beat_tasks = os.environ.get(BEAT_ENV, "").strip().lower() in ("true", "1", "yes", "on")
    with _lock:
        if not _state["on"]:
            otel = CeleryInstrumentor()  # type: ignore[no-untyped-call]
            if not otel.is_instrumented_by_opentelemetry:
                otel.instrument()
            # The bridge records failures itself (the live exception, through bridge.scope).
            signals.task_failure.disconnect(CeleryInstrumentor._trace_failure)
            signals.task_failure.connect(_on_failure, weak=False)
            signals.task_prerun.connect(_on_prerun, weak=False)
            signals.task_success.connect(_on_success, weak=False)
            signals.task_retry.connect(_on_retry, weak=False)
            signals.worker_process_shutdown.connect(_on_child_exit, weak=False)
            original = Celery.send_task
            _state["send_task"] = original

            def send_task(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
                try:
                    return original(self, name, *args, **kwargs)
                except Exception as exc:
                    _end_open_publish(self, name, exc)
                    raise

            Celery.send_task = send_task
            _state["on"] = True
        if monitor_beat_tasks and not _state["beat"]:
            from bridge.frameworks.celery_beat import patch_beat

            _state["apply_entry"] = patch_beat()
            _state["beat"] = True


def uninstrument() -> None:
    """Undo :func:`instrument` (and the instrumentation it turned on)."""
    from celery import Celery, signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    with _lock:
        if not _state["on"]:
            return
        for signal, receiver in (
            (signals.task_failure, _on_failure),
            (signals.task_prerun, _on_prerun),
            (signals.task_success, _on_success),
            (signals.task_retry, _on_retry),
            (signals.worker_process_shutdown, _on_child_exit),
        ):
            signal.disconnect(receiver)
        Celery.send_task = _state["send_task"]
        if _state["apply_entry"] is not None:
            from celery.beat import Scheduler

            Scheduler.apply_entry = _state["apply_entry"]
            _state["apply_entry"] = None
        _state.update(on=False, beat=False)
        CeleryInstrumentor().uninstrument()  # type: ignore[no-untyped-call]


class BridgeCeleryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``bridge_celery`` in ``opentelemetry_instrumentor``: ``instrument()`` under ``opentelemetry-instrument``.

    It works with OpenTelemetry's own ``celery`` entry point in either order (that one is then a no-op).
    Switch it off with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=bridge_celery``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("celery >= 5.0",)

    def _instrument(self, **kwargs: Any) -> None:
        instrument()

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()


# -- the worker ------------------------------------------------------------------------------------------


def _run_span(task: Any, task_id: Optional[str]) -> Optional[trace_api.Span]:
    """The CONSUMER span the instrumentation opened for this run (in this process), if any."""
    from opentelemetry.instrumentation.celery import utils

    if task is None or task_id is None:
        return None
    found = utils.retrieve_context(task, task_id)
    return found[0] if found else None


def _task_attributes(task: Any, task_id: str) -> dict[str, Any]:
    """What the instrumentation sets only when the task ends, needed from its start (errors are sent at once)."""
    request = task.request
    attributes: dict[str, Any] = {
        "celery.action": "run",
        "celery.task_name": str(task.name),
        "messaging.message.id": str(task_id),
    }
    retries = getattr(request, "retries", 0)
    if isinstance(retries, int) and retries:
        attributes["celery.retries"] = retries
    delivery = getattr(request, "delivery_info", None)
    if isinstance(delivery, Mapping) and isinstance(delivery.get("routing_key"), str):
        attributes["messaging.destination"] = delivery["routing_key"]
    return attributes


def _on_prerun(sender: Any = None, task_id: Optional[str] = None, task: Any = None, **_: Any) -> None:
    try:
        span = _run_span(task, task_id)
        if span is not None and span.is_recording() and task_id is not None:
            span.set_attributes(_task_attributes(task, task_id))
    except Exception:
        logger.debug("otel-sentry-bridge: could not name the task's span", exc_info=True)


def _unwrap(exception: Any, einfo: Any) -> Optional[BaseException]:
    exc = exception if isinstance(exception, BaseException) else getattr(einfo, "exception", None)
    inner = getattr(exc, "exc", None)  # billiard's ExceptionWithTraceback
    if isinstance(inner, BaseException):
        exc = inner
    return exc if isinstance(exc, BaseException) else None


def _on_failure(
    sender: Any = None, task_id: Optional[str] = None, exception: Any = None, einfo: Any = None, **_: Any
) -> None:
    try:
        from bridge import capturing

        exc = _unwrap(exception, einfo)
        span = _run_span(sender, task_id)
        if span is None:
            if exc is not None and type(exc).__name__ == "WorkerLostError":
                _report_lost_run(sender, task_id, exc)
            return
        finish_beat_check_in(sender, span, "error")
        description = f"{type(exc).__qualname__}: {exc}" if exc is not None else "task failed"
        if span.is_recording():
            span.set_status(Status(StatusCode.ERROR, description))
            if exc is not None:
                span.set_attribute("error.type", type(exc).__qualname__)
        throws = getattr(sender, "throws", ()) or ()
        if exc is None or (throws and isinstance(exc, tuple(throws))):
            return  # an expected failure: the run failed, no error event (sentry-sdk's rule)
        # An unsampled run's span records nothing: the event still names its task and carries its context.
        known = None if span.is_recording() or task_id is None else _task_attributes(sender, task_id)
        capturing.record_exception(None, span, exc, handled=False, root_attributes=known)
    except Exception:
        logger.warning("otel-sentry-bridge: could not record a task's failure", exc_info=True)


def _report_lost_run(task: Any, task_id: Optional[str], exc: BaseException) -> None:
    """In the main worker process: the child running this task died; its spans are gone with it."""
    from bridge import capturing, setup

    with _lock:
        _lost[0] += 1
        count = _lost[0]
    name = str(getattr(task, "name", "unknown"))
    logger.warning(
        "otel-sentry-bridge: the worker child running task %s[%s] died mid-task (%s); the spans it had not "
        "exported are lost (%d such runs so far); a replacement span records the loss",
        name,
        task_id,
        exc,
        count,
    )
    bridge = setup.active()
    if bridge is None or not bridge.enabled or bridge.provider is None:
        return
    from opentelemetry.instrumentation.celery import celery_getter

    parent = propagate.extract(task.request, getter=celery_getter)
    tracer = bridge.provider.get_tracer("bridge.frameworks.celery")
    attributes = {**_task_attributes(task, task_id or ""), "celery.worker_lost": True, "celery.state": "FAILURE"}
    span = tracer.start_span(f"run/{name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
    span.set_attribute("error.type", type(exc).__qualname__)
    capturing.record_exception(None, span, exc, handled=False)
    span.end()


def _on_success(sender: Any = None, **_: Any) -> None:
    try:
        if not started_by_beat(sender):  # every task: the span is looked up only for beat's runs
            return
        task_id = getattr(getattr(sender, "request", None), "id", None)
        span = _run_span(sender, task_id)
        finish_beat_check_in(sender, span, "ok")
    except Exception:
        logger.debug("otel-sentry-bridge: could not finish a task's check-in", exc_info=True)


def _on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    try:
        if not started_by_beat(sender):
            return
        span = _run_span(sender, getattr(request, "id", None))
        finish_beat_check_in(sender, span, "error")  # sentry-sdk's rule: a retried beat run failed
    except Exception:
        logger.debug("otel-sentry-bridge: could not finish a task's check-in", exc_info=True)


def _on_child_exit(**_: Any) -> None:
    """A prefork child is about to ``os._exit`` (recycled, or the worker stops): no atexit will run."""
    try:
        from bridge import setup

        bridge = setup.active()
        if bridge is not None:
            bridge.flush(bridge.options.shutdown_timeout)
    except Exception:
        logger.warning("otel-sentry-bridge: could not flush in an exiting worker child", exc_info=True)


# -- the caller ------------------------------------------------------------------------------------------


def _end_open_publish(app: Any, name: str, exc: BaseException) -> None:
    """``send_task`` failed after ``before_task_publish`` (the serializer refused the arguments, the broker
    is gone): ``after_task_publish`` never comes, so end the PRODUCER span here, with the error."""
    try:
        from opentelemetry.instrumentation.celery import utils

        task = app.tasks.get(name) if hasattr(app, "tasks") else None
        opened = getattr(task, utils.CTX_KEY, None)
        if not opened:
            return
        current = trace_api.get_current_span()
        for key, (span, activation, _) in list(opened.items()):
            if key[1] and span is current:  # (task_id, is_publish)
                del opened[key]
                activation.__exit__(type(exc), exc, exc.__traceback__)
    except Exception:
        logger.debug("otel-sentry-bridge: could not end an unpublished task's span", exc_info=True)
