"""The Sentry leg: finished spans → assembled transactions and error events → envelopes → transport.

Errors and messages captured in this process (``bridge.sentry.capture``) leave at once; when their span
ends, its span events whose ``sentry.event_id`` the capturer sent are skipped. Exception events recorded
otherwise (other instrumentations, spans from other processes) are still sent from the finished span.

On the request thread ``on_end`` only assembles (a dict insert or two under a lock) and queues work;
conversion, serialization, compression and the HTTP POST all happen on the transport's worker thread.
Rate-limited categories are refused before any conversion happens. Errors are sent whether or not the
trace was sampled (``sample_rate`` governs them, as in Sentry).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Optional

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from bridge import dsc as dsc_module
from bridge import tracebook
from bridge.config import Options
from bridge.sample_rand import sample_rand, stated_rate
from bridge.sampling import sampler_rate
from bridge.sentry.assemble import Assembler
from bridge.sentry.capture import Capturer
from bridge.sentry.context import merge_request_headers
from bridge.sentry.convert import (
    ConvertOptions,
    dynamic_sampling_context,
    error_events,
    transaction_event,
    transaction_name,
)
from bridge.sentry.envelope import Envelope
from bridge.sentry.transport import Transport
from bridge.spanfields import events_of
from bridge.version import __version__

__all__ = ["SentryLeg", "SentrySpanProcessor", "ERROR_EVENT_NAMES"]

logger = logging.getLogger(__name__)

ERROR_EVENT_NAMES = frozenset({"exception", "sentry.message"})
# Envelopes of at least this many bytes are gzipped; smaller ones go as they are (Sentry accepts both).
# Under load gzip cost the worker ~30 us of CPU per small envelope (a one-span transaction: 1.6 kB, 0.8
# kB gzipped): 12 % of gunicorn's requests/s in benchmarks/. Bodies with real content (child spans,
# stack traces with source context) are larger and still compressed. Sentry's own Node.js transport
# compresses from 32 kB only.
COMPRESS_FROM = 4096


def traces_sample_rate(options: Options) -> float:
    """The rate the one OTel sampler applies, for the DSC (``sample_rate``)."""
    return sampler_rate(options)


class SentryLeg:
    """Environment and release come from ``SENTRY_ENVIRONMENT`` / ``SENTRY_RELEASE`` when set, else from
    each span's own resource (the converter's rule), so that one leg serves spans of many resources.

    ``in_process=False`` (``otel-sentry-bridge serve``): the spans come from other processes, so no frame
    is judged in-app by this process's working directory, and this leg does not state this process's DSC.
    """

    def __init__(
        self,
        options: Options,
        resource: Resource,
        *,
        transport: Optional[Transport] = None,
        assembler: Optional[Assembler] = None,
        in_process: bool = True,
    ) -> None:
        assert options.dsn is not None
        self.options = options
        self.dsn = options.dsn
        self.resource = resource
        self.convert_options = ConvertOptions(
            environment=options.environment,
            release=options.release,
            send_default_pii=options.send_default_pii,
            in_app_include=options.in_app_include,
            in_app_exclude=options.in_app_exclude,
            project_root=os.getcwd() if in_process else None,
            sdk_version=__version__,
        )
        self.transport = transport or Transport(
            options.dsn,
            queue_size=options.sentry_queue_size,
            timeout=options.sentry_timeout,
            compress_from=COMPRESS_FROM,
            client=f"otel-sentry-bridge/{__version__}",
            build_in_caller=("transaction", "error"),  # issue 18: see bridge.sentry.transport
            build_now=("error",),  # a queued error would hold its exception's frames (and their locals)
        )
        self.assembler = assembler or Assembler()
        self.sample_rate = traces_sample_rate(options)
        self._lock = threading.Lock()
        self._reported_overflow = 0
        self._closed = False
        self.in_process = in_process
        self.capturer = Capturer(self)
        self.processor = SentrySpanProcessor(self)
        if in_process:
            dsc_module.set_head(self)  # outgoing baggage states this leg's DSC (bridge.dsc)
        _legs.add(self)  # a weak set: a leg replaced by a later init() is not kept alive by the fork hook

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self.capturer.after_fork()

    # -- spans from the provider -------------------------------------------------------------------
    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            ready = self.assembler.add(span)
            overflow = self._overflow()
        self._emit(ready, overflow)

    def expire(self) -> None:
        """Send what waited long enough in the assembler (roots due, children past their TTL); call when idle."""
        with self._lock:
            ready = self.assembler.sweep()
            overflow = self._overflow()
        self._emit(ready, overflow)

    def _overflow(self) -> int:
        """With the lock held: spans dropped over the assembler's caps since the last call."""
        overflow = self.assembler.dropped_spans - self._reported_overflow
        self._reported_overflow = self.assembler.dropped_spans
        return overflow

    def _emit(self, ready: Sequence[tuple[ReadableSpan, list[ReadableSpan]]], overflow: int) -> None:
        if overflow:
            self.transport.record_lost("buffer_overflow", "span", overflow)
        for root, children in ready:
            self._submit(root, children)

    def _submit(self, root: ReadableSpan, children: Sequence[ReadableSpan]) -> None:
        named: Optional[tuple[str, str]] = None
        seen: set[tuple[Any, Any]] = set()
        for span in (root, *children) if children else (root,):
            events = events_of(span)  # without the property's locked copy (bridge.spanfields)
            if not events or not any(event.name in ERROR_EVENT_NAMES for event in events):
                continue
            if named is None:
                named = transaction_name(root)
            # An exception escaping nested spans is recorded on each of them: report it once, from the
            # outermost span (the root comes first). Events the bridge recorded in this process (they carry
            # ``sentry.event_id``) left when they were captured (bridge.sentry.capture).
            skip = set()
            for index, event in enumerate(events):
                attributes = event.attributes or {}
                if event.name == "exception":
                    key = (attributes.get("exception.type"), attributes.get("exception.message"))
                    if key in seen:
                        skip.add(index)
                    seen.add(key)
                event_id = attributes.get("sentry.event_id")
                if event_id and self.capturer.already_sent(str(event_id)):
                    skip.add(index)
            name, source = named
            # One task per error event, so that a task dropped before it is built (a full queue, a rate
            # limit, shutdown) counts exactly the events it held; the span converts once, for all of them.
            converted: dict[int, Optional[dict[str, Any]]] = {}
            for index, event in enumerate(events):
                if event.name in ERROR_EVENT_NAMES and index not in skip:
                    build = functools.partial(self._span_error, span, name, converted, index, root)
                    self.transport.submit("error", build)
        context = root.context
        if context is not None and context.trace_flags.sampled:
            self.transport.submit("transaction", functools.partial(self._transaction, root, children))

    # -- the DSC (bridge.dsc: the upstream's when it sent one, else this one) ------------------------
    def head_dsc(self, trace_id: int, sampled: bool, root: Optional[Any]) -> dict[str, str]:
        """The DSC of a trace this service heads; ``sample_rand`` agrees with ``sampled`` (bridge.sample_rand).

        ``root`` names the transaction: the local root span, or ``(name, source)``, or None.
        """
        named: tuple[Optional[str], Optional[str]] = (None, None)
        resource = self.resource
        if isinstance(root, ReadableSpan):
            named = transaction_name(root)
            resource = root.resource or resource  # environment and release as on the root's events
        elif isinstance(root, tuple):
            named = root
        rate = stated_rate(sampled, self.sample_rate)
        dsc = dynamic_sampling_context(
            trace_id=trace_id,
            public_key=self.dsn.public_key,
            options=self.convert_options,
            transaction=named[0],
            sample_rate=rate,
            sampled=sampled,
            source=named[1],
            resource=resource.attributes,
        )
        dsc["sample_rand"] = sample_rand(trace_id, sampled, rate)
        return dsc

    def _dsc(self, span: Any, root: Optional[ReadableSpan] = None) -> Optional[dict[str, str]]:
        """``root``: the local root of ``span``'s transaction, for spans the tracebook does not know."""
        return tracebook.dsc_for_span(span, head=self, root=root)

    # -- builders (run on the transport's worker thread) -------------------------------------------
    def _transaction(self, root: ReadableSpan, children: Sequence[ReadableSpan]) -> Envelope:
        event = transaction_event(root, children, self.convert_options)
        return Envelope.for_event(event, self._dsc(root))

    def _span_error(
        self,
        span: ReadableSpan,
        transaction: Optional[str],
        converted: dict[int, Optional[dict[str, Any]]],
        index: int,
        root: Optional[ReadableSpan] = None,
    ) -> Optional[Envelope]:
        """The envelope of the error event at ``index`` in ``span.events``. The first of the span's builders
        to run converts all its error events into ``converted`` (builders run one by one, on the worker)."""
        indices = [i for i, e in enumerate(span.events) if e.name in ERROR_EVENT_NAMES]
        if not converted:
            events = error_events(span, transaction, self.convert_options)
            converted.update(dict.fromkeys(indices))
            for i, made in zip(indices, events):
                event_id = (span.events[i].attributes or {}).get("sentry.event_id")
                if event_id:
                    made["event_id"] = str(event_id)
                converted[i] = made
        event = converted.pop(index, None)
        if event is None:
            return None
        return self.finish_event(event, None, self._dsc(span, root))

    def finish_event(
        self,
        event: dict[str, Any],
        exc: Optional[BaseException],
        dsc: Optional[dict[str, str]],
        headers: Optional[Mapping[str, str]] = None,
        traceback: Optional[TracebackType] = None,
    ) -> Optional[Envelope]:
        """Add the request's headers; apply sample_rate and before_send; wrap the event in its envelope."""
        if headers and isinstance(event.get("request"), dict):
            merge_request_headers(event["request"], headers, self.options.send_default_pii)
        if self.options.sample_rate < 1.0 and random.random() >= self.options.sample_rate:
            self.transport.record_lost("sample_rate", "error")
            return None
        before_send = self.options.before_send
        if before_send is not None:
            hint: dict[str, Any] = {}
            if exc is not None:
                hint["exc_info"] = (type(exc), exc, traceback or exc.__traceback__)
            try:
                result = before_send(event, hint)
            except Exception:
                logger.warning("otel-sentry-bridge: before_send raised; the event is sent as it was", exc_info=True)
                result = event
            if result is None:
                self.transport.record_lost("before_send", "error")
                return None
            event = result
        return Envelope.for_event(event, dsc)

    # -- cron check-ins (bridge.jobs.monitor; data category "monitor", rate limits honoured) --------
    def send_check_in(self, payload: dict[str, Any], span: Optional[trace_api.Span] = None) -> bool:
        """Queue one ``check_in`` item (``bridge.sentry.checkins``); False when refused (rate limit, full queue).

        Environment and release are this leg's (as on its events); the envelope carries the run's DSC.
        """
        from bridge.sentry.checkins import check_in_envelope
        from bridge.sentry.context import resource_view

        view = resource_view(self.resource.attributes, self.convert_options)
        payload.setdefault("environment", view.environment)
        if view.release:
            payload.setdefault("release", view.release)
        dsc = None
        if span is not None and span.get_span_context().is_valid:
            dsc = tracebook.dsc_for_span(span, head=self)  # on the caller's thread: the run's span knows its trace

        def build() -> Envelope:
            return check_in_envelope(payload, dsc)

        return self.transport.submit("monitor", build)

    # -- lifecycle ------------------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        return self.transport.flush(timeout)

    def shutdown(self, timeout: float) -> None:
        """Send what the assembler still holds, then stop the transport within ``timeout``. Idempotent."""
        dsc_module.clear_head(self)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ready = self.assembler.drain()
        for root, children in ready:
            self._submit(root, children)
        self.transport.shutdown(timeout)


class SentrySpanProcessor(SpanProcessor):
    """The provider's hook into the Sentry leg; never raises into the request."""

    def __init__(self, leg: SentryLeg) -> None:
        self.leg = leg

    def on_start(self, span: Any, parent_context: Optional[context_api.Context] = None) -> None:
        try:
            tracebook.remember(span, parent_context)  # the trace's incoming DSC and local root (bridge.tracebook)
        except Exception:
            logger.debug("otel-sentry-bridge: could not note the span's trace", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            tracebook.handover(span)  # the SDK passes a copy: the trace's state moves onto it
            self.leg.on_end(span)
        except Exception:
            logger.warning("otel-sentry-bridge: the Sentry leg could not take a span", exc_info=True)

    def shutdown(self) -> None:
        self.leg.shutdown(self.leg.options.shutdown_timeout)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.leg.flush(timeout_millis / 1000)


_legs: weakref.WeakSet[SentryLeg] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A lock held by another thread at fork() time would never be released in the child."""
    for leg in list(_legs):
        leg._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
