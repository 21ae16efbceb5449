"""Getting envelopes to Sentry without ever delaying the host app.

``submit`` puts a *builder* on a bounded queue and returns at once; one daemon worker thread (started on
first use, and again in a fork() child) builds each envelope, drops what a rate limit forbids, attaches a
client report when losses are pending, gzips it when it is at least ``compress_from`` bytes long (the
Sentry leg: 4 kB) and POSTs it through a ``Sender`` (by default our own kept-alive HTTP client, see
``http.py``). Every loss is counted by reason and category, reported to Sentry
in a later client report, and visible in ``stats()``. Nothing here raises into the caller.

Design, measured with ``benchmarks/transport_cpu.py`` (2-core machine, 1.9 kB transaction envelope):
- one request at a time over one kept-alive connection: ~14 us CPU per POST, ~30 us with gzip level 1
  (http.client: ~75 us before gzip). The caller pays ~1 us per ``submit``.
- pipelining: when the worker wakes with several envelopes queued, it takes a *window* of them (as many
  as the sender pipelines: ``HttpClient.pipeline_depth``, 1 to 256, up to a flush marker), builds them all,
  writes them with one ``sendall`` and then reads the answers in order (``HttpClient.send_many``; what
  is re-sent when a connection ends mid-window is decided there). A burst costs ~30 us per envelope
  instead of ~55 (serialization and gzip included). Rate limits: every window is built after the answers
  of the previous one were read, so a limit learned anywhere in a window applies to every envelope not
  yet written (dropped as ``ratelimit_backoff`` before conversion); envelopes of the same window were
  already on the wire, and the server's answer to each decides (a 429 is counted by the server).
- no batching: Sentry takes one event per envelope, so there is nothing to merge into one request.
- the worker lingers: the first envelope queued waits up to ``linger`` (0.1 s) for others, unless 64 are
  queued (``batch``) or a flush or shutdown asks; so at any rate envelopes go out in windows, and a
  wake-up (~30 us here) is shared by all of them instead of paid by each. Under gunicorn (wrk, one
  connection, ~2 000 requests/s): 1 450 -> 1 800 requests/s, worker CPU 580 -> 460 us per request.
- the worker is woken only when idle and only for the first envelope queued or a full batch, and flush
  waiters only when their marker is done (waking them per envelope doubled the cost).
- the GIL: every system call of the worker gives the GIL up, and in a busy process getting it back can
  take a switch interval (5 ms). So the worker makes few of them per envelope: one write and a few reads
  per window, no gzip for small bodies, no ``os.urandom`` for event ids (``context.event_id``). What is
  left is CPU: ~35 us per one-span transaction (convert 15, DSC 5, JSON 10, envelope 5) in a quiet
  process, ~60 us under gunicorn at full load (caches shared with the request thread).
- building in the caller when the worker is behind (``build_in_caller``, the Sentry leg: transactions
  and errors): once a quarter of the queue is waiting, an envelope is built (converted and JSON-encoded)
  in ``submit``, on the thread that ended the span, and the queue holds the result. While the worker
  keeps up it builds, as before: a server's request thread waits on its sockets (gunicorn's sync worker:
  accept, recv), and the worker converts meanwhile (built in the caller always, e's requests/s under a
  saturated sync worker were 0.68 x OpenTelemetry's alone; so, 0.86). Why build in the caller at all:
  in a process whose request thread never waits (a tight loop, a saturated server) the
  worker gets the GIL only when the request thread is made to drop it, and a worker that must also
  convert cannot keep pace on that share: its bounded queue overflowed (21 % of the transactions lost in
  benchmarks/, issue 18). Built by the caller, each request pays for its own transaction, so arrivals
  slow down to what the process can convert, and the worker only writes bytes. The CPU is the same (it
  only moves); sentry-sdk does the same (it serializes events in the calling thread). A transaction that
  would be refused (full queue, rate limit, shutdown) is not built. The Sentry leg builds errors there
  always (``build_now``), behind or not: a failing request pays for its own stack trace, and the queue
  holds bytes instead of exceptions, tracebacks and frames (a queued exception keeps every local of every
  frame it passed through alive: ~80 kB per failed Celery task, benchmarks/celery_tasks.py).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Union

from bridge.sentry.client_reports import LossCounter, Report, report_item
from bridge.sentry.dsn import Dsn
from bridge.sentry.envelope import Envelope
from bridge.sentry.http import HttpClient, Response, Sender
from bridge.sentry.ratelimits import RateLimits

__all__ = ["Transport", "TransportStats", "Build"]

logger = logging.getLogger(__name__)

Build = Callable[[], Union[None, Envelope, Sequence[Envelope]]]  # one envelope per event; several go out together
_Task = tuple[str, Optional[Build]]  # (category, builder); no builder: a flush marker
_Prepared = tuple[bytes, tuple[str, ...]]  # an envelope's bytes; its items' categories (client reports left out)

TRANSACTION = "transaction"
_LOG_EVERY = 60.0  # seconds between two WARNING lines for the same kind of failure
_LINGER = 0.1  # seconds a queued envelope may wait for others to go out with (flush and shutdown never wait)
# After a network error (refused, unreachable, timed out) the worker waits this long before it builds the
# next envelopes: a refused connection fails at once, and building and failing envelope after envelope
# kept the GIL from the app's requests (p99 x10 in benchmarks/faults.py). What arrives meanwhile queues.
_DOWN_FOR = 0.25
_BATCH = 64  # queued envelopes that start a send at once, without lingering


@dataclass(frozen=True)
class TransportStats:
    sent: int  # envelopes answered with a 2xx
    failed: dict[str, int]  # envelopes (client reports alone too) not delivered, by reason:
    #                         network_error, send_error, rate_limited (a 429: the server counts those itself)
    dropped: dict[tuple[str, str], int]  # (reason, category) -> quantity, every loss since start
    queued: int
    client_reports: int  # client reports delivered
    rate_limits: dict[str, float]  # seconds left per limited category ("" = all)


class _Throttle:
    """WARNING at most once per interval per key; DEBUG otherwise."""

    def __init__(self, interval: float = _LOG_EVERY) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            self._last[key] = now
            logger.warning(message + " (similar failures are logged at DEBUG for a minute)", *args)
        else:
            logger.debug(message, *args)


def _gzip(data: bytes) -> bytes:
    # Level 1: the fastest. memLevel 5 for small bodies: less deflate state to allocate and clear; never
    # slower in our measurements, and it avoided a heap-state outlier of the default (52 us instead of 8).
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31, 5 if len(data) < 65536 else 8)
    return compressor.compress(data) + compressor.flush()


class Transport:
    def __init__(
        self,
        dsn: Dsn,
        *,
        queue_size: int = 1000,
        timeout: float = 5.0,
        compress: bool = True,
        compress_from: int = 0,
        client: str = "otel-sentry-bridge/0.1.0",
        sender: Optional[Sender] = None,
        client_report_interval: float = 30.0,
        linger: float = _LINGER,
        batch: int = _BATCH,
        build_in_caller: Collection[str] = (),
        build_now: Collection[str] = (),
    ) -> None:
        self.dsn = dsn
        # Categories whose envelopes ``submit`` builds on the caller's thread once the worker is behind (this
        # many queued; see the module docstring).
        self._build_in_caller = frozenset(build_in_caller)
        # Categories ``submit`` always builds on the caller's thread, so the queue never holds what their
        # builders hold (an error's exception, traceback and frames, with every local of every frame).
        self._build_now = frozenset(build_now)
        self._behind = max(1, max(1, queue_size) // 4)
        self._queue_size = max(1, queue_size)
        self._linger = max(0.0, linger)  # seconds the first queued envelope may wait for others
        self._batch = max(1, batch)  # queued envelopes that wake the worker without waiting
        self._compress = compress
        self._compress_from = max(0, compress_from)  # bodies shorter than this go as they are
        self._report_interval = max(0.1, client_report_interval)  # a failed report is retried this often
        self._sender: Sender = sender or HttpClient(dsn.envelope_url, timeout=timeout)
        self._headers = {
            "Content-Type": "application/x-sentry-envelope",
            "X-Sentry-Auth": dsn.auth_header(client),
            "User-Agent": client,
        }
        self._gzip_headers = {**self._headers, "Content-Encoding": "gzip"}
        self._limits = RateLimits()
        self._losses = LossCounter()
        self._log = _Throttle()
        self._closed = False
        self._down_until = 0.0  # after a network error: no envelope is built before then
        self._reset_state()
        _live.add(self)

    def _reset_state(self) -> None:
        """Queue, lock, worker and counters: fresh at start and in a fork() child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[_Task] = deque()
        self._transactions = 0  # transactions in the queue (so a full queue of errors is not searched)
        self._first_at = 0.0  # when the oldest queued task was queued (approximately: see _loop)
        self._enqueued = 0  # tasks ever queued; flush waits until _done reaches its marker
        self._done = 0
        self._flush_waiters = 0
        self._worker: Optional[threading.Thread] = None
        self._idle = False
        self._sent = 0
        self._reports_sent = 0
        self._failed: dict[str, int] = {}

    # -- the caller's side: never blocks on I/O, never raises ----------------------------------------
    def submit(self, category: str, build: Build) -> bool:
        try:
            if self._pid != os.getpid():
                self._after_fork()
            if self._limits.is_limited(category):
                self._lose("ratelimit_backoff", category)
                return False
            if category in self._build_now or (category in self._build_in_caller and len(self._queue) >= self._behind):
                if self._closed or len(self._queue) >= self._queue_size:  # refused below: not worth building
                    self._lose("shutdown" if self._closed else "queue_overflow", category)
                    return False
                built = self._build(category, build)  # counts its own losses; never raises
                if not built:
                    return False
                build = functools.partial(_prebuilt, built)
            evicted = False
            with self._lock:
                queued = len(self._queue)
                if not self._closed and queued >= self._queue_size and category != TRANSACTION:
                    evicted = self._evict_transaction()  # a full queue loses transactions before errors
                    queued -= evicted
                if not self._closed and queued < self._queue_size:
                    self._queue.append((category, build))
                    self._enqueued += 1
                    if category == TRANSACTION:
                        self._transactions += 1
                    if not queued:  # the worker starts the linger clock
                        self._first_at = time.monotonic()
                        self._wake()
                    elif queued + 1 == self._batch:
                        self._wake()
                    accepted = True
                else:
                    accepted = False
            if evicted:
                self._lose("queue_overflow", TRANSACTION)
            if accepted:
                return True
            self._lose("shutdown" if self._closed else "queue_overflow", category)
        except Exception:
            logger.debug("submit failed", exc_info=True)
        return False

    def _evict_transaction(self) -> bool:
        """With the lock held: drop the oldest queued transaction to make room (True if there was one).

        Only while errors fill less than half the queue: a queued error holds its exception, traceback and
        frames (~5 kB more than a transaction), so a queue full of them would cost far more memory."""
        if not self._transactions or len(self._queue) - self._transactions >= self._queue_size // 2:
            return False
        queue = self._queue
        for index, (category, build) in enumerate(queue):
            if category == TRANSACTION and build is not None:
                del queue[index]
                self._transactions -= 1
                self._done += 1  # flush() counts it as finished: it never will be sent
                return True
        return False

    def record_lost(self, reason: str, category: str, quantity: int = 1) -> None:
        try:
            self._lose(reason, category, quantity)
        except Exception:
            logger.debug("record_lost failed", exc_info=True)

    def is_rate_limited(self, category: str) -> bool:
        return self._limits.is_limited(category)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted before this call was sent or dropped, and pending losses were
        reported; False if the deadline came first."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            if self._pid != os.getpid():
                self._after_fork()
            with self._lock:
                if self._closed or (self._worker is None and not self._queue and not self._losses.pending):
                    return not self._queue
                if not (self._queue and self._queue[-1][1] is None):  # one marker serves concurrent flushes
                    if not self._queue:
                        self._first_at = time.monotonic()
                    self._queue.append(("internal", None))
                    self._enqueued += 1
                target = self._enqueued
                self._flush_waiters += 1  # the worker stops lingering
                self._wake()
                try:
                    while self._done < target:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                        self._progress.wait(remaining)
                    return True
                finally:
                    self._flush_waiters -= 1
        except Exception:
            logger.debug("flush failed", exc_info=True)
            return False

    def shutdown(self, timeout: float = 2.0) -> None:
        """Flush within ``timeout``, then stop the worker; what is still queued is dropped and counted."""
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            self.flush(timeout)
            with self._lock:
                self._closed = True
                abandoned = [category for category, build in self._queue if build is not None]
                self._done += len(self._queue)
                self._queue.clear()
                self._transactions = 0
                self._progress.notify_all()
                self._has_work.notify()
                worker = self._worker
            for category in abandoned:
                self._lose("shutdown", category)
            if abandoned:
                logger.warning("Sentry transport shut down with %d envelopes unsent", len(abandoned))
            if worker is not None and worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
            elif worker is None:
                self._sender.close()
        except Exception:
            logger.debug("shutdown failed", exc_info=True)

    def stats(self) -> TransportStats:
        return TransportStats(
            sent=self._sent,
            failed=dict(self._failed),
            dropped=self._losses.totals(),
            queued=len(self._queue),
            client_reports=self._reports_sent,
            rate_limits=self._limits.active(),
        )

    # -- shared helpers ------------------------------------------------------------------------------
    def _wake(self) -> None:
        """With the lock held: make sure a worker runs and notices new work."""
        if self._worker is None:
            worker = threading.Thread(target=self._run, name="otel-sentry-bridge-transport", daemon=True)
            try:
                worker.start()
            except RuntimeError:  # e.g. at interpreter exit; queued work waits for the next attempt
                logger.debug("could not start the transport worker", exc_info=True)
                return
            self._worker = worker
        elif self._idle:
            self._has_work.notify()

    def _lose(self, reason: str, category: str, quantity: int = 1) -> None:
        if self._losses.record(reason, category, quantity) and not self._closed:
            with self._lock:  # the first pending loss: the worker must plan a client report
                self._wake()

    def _after_fork(self) -> None:
        """In a fork() child (from os.register_at_fork, or noticed by pid when a C extension forked)."""
        self._reset_state()
        self._losses.reset_after_fork()
        self._sender.close()  # drops the parent's connection in this process only

    # -- the worker ----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:  # after shutdown; or, should the loop itself ever fail, a new worker takes over
            with self._lock:
                if self._worker is threading.current_thread():
                    self._worker = None
                    if self._queue and not self._closed:
                        self._wake()
            self._sender.close()

    def _loop(self) -> None:
        ready = 0  # tasks that were queued when the worker decided to send: they go without lingering again
        decided = 0.0
        while True:
            window: list[_Task] = []
            with self._lock:
                while not self._closed:
                    wait: Optional[float]
                    down_for = self._down_until - time.monotonic()
                    if self._queue and down_for > 0:  # Sentry was unreachable a moment ago: let it be
                        self._idle = True
                        self._has_work.wait(down_for)
                        self._idle = False
                        continue
                    if self._queue:  # linger, unless a flush waits or a batch is full
                        if ready > 0:
                            break
                        now = time.monotonic()
                        wait = self._linger - (now - self._first_at)
                        if wait <= 0 or self._flush_waiters or len(self._queue) >= self._batch:
                            ready, decided = len(self._queue), now
                            break
                    else:
                        wait = self._losses.seconds_until_due(self._report_interval)
                        if wait is not None and wait <= 0:
                            break
                    self._idle = True
                    self._has_work.wait(wait)
                    self._idle = False
                if self._queue:
                    window = self._take_window()
                    ready -= len(window)
                    if ready <= 0:
                        ready = 0
                        self._first_at = decided  # tasks queued since then linger from that moment on
                elif self._closed:
                    return
                else:
                    ready = 0
            try:
                self._process(window)
            finally:
                if window:
                    with self._lock:
                        self._done += len(window)
                        if window[-1][1] is None and self._flush_waiters:  # a flush marker: all before it is done
                            self._progress.notify_all()

    def _take_window(self) -> list[_Task]:
        """With the lock held: the next tasks to send together: as many as the sender pipelines, up to
        and including the first flush marker."""
        depth = max(1, getattr(self._sender, "pipeline_depth", 1))
        window: list[_Task] = []
        queue = self._queue
        while queue and len(window) < depth:
            task = queue.popleft()
            window.append(task)
            if task[0] == TRANSACTION:
                self._transactions -= 1
            if task[1] is None:
                break
        return window

    def _process(self, window: list[_Task]) -> None:
        """Build and send a window's envelopes; at a flush marker (or with no task), pending losses too."""
        try:
            # Each envelope is serialized as soon as it is built, and only its bytes and the categories of
            # its items are kept until the window is sent: a window of envelope objects (five containers
            # each: the envelope, its headers, the DSC, its items, the item) kept the garbage collector
            # busy in a saturated process (more young objects alive, more collections, more promoted).
            prepared: list[_Prepared] = []
            for category, build in window:
                if build is not None:
                    prepared.extend(_prepare(envelope) for envelope in self._build(category, build))
            if prepared:
                report = self._losses.take() if self._losses.pending else None  # never rate-limited
                if report is not None:  # the report rides as the first envelope's last item
                    body, categories = prepared[0]
                    prepared[0] = (body + report_item(report).serialize(), categories)
                self._post(prepared, report)
            if not window or window[-1][1] is None:
                self._send_report()
        except Exception as exc:  # the worker must survive anything
            self._log.warn("internal", "Sentry transport error: %r", exc)
            logger.debug("transport step failed", exc_info=True)

    def _build(self, category: str, build: Build) -> list[Envelope]:
        """The task's envelopes without the items a rate limit now forbids (envelopes left empty go)."""
        if self._limits.is_limited(category):  # limited after submit(): not even converted
            self._lose("ratelimit_backoff", category)
            return []
        try:
            built = build()
        except BaseException as exc:  # even SystemExit: a builder must not end the worker
            self._log.warn("build", "could not build a Sentry envelope (%s): %r", category, exc)
            logger.debug("envelope builder failed", exc_info=True)
            self._lose("internal_sdk_error", category)
            return []
        envelopes = [] if built is None else [built] if isinstance(built, Envelope) else list(built)
        kept = []
        for envelope in envelopes:
            items = []
            for item in envelope.items:
                if item.type != "client_report" and self._limits.is_limited(item.category):
                    self._lose("ratelimit_backoff", item.category)
                else:
                    items.append(item)
            if any(item.type != "client_report" for item in items):
                kept.append(envelope if len(items) == len(envelope.items) else Envelope(envelope.headers, items))
        return kept

    def _send_report(self) -> None:
        if self._losses.pending:
            report = self._losses.take()
            if report is not None:
                self._post([_prepare(Envelope({}, [report_item(report)]))], report)

    def _post(self, envelopes: list[_Prepared], report: Optional[Report]) -> None:
        """POST the envelopes (pipelined when the sender can); ``report`` rides on the first one."""
        requests = []
        for body, _ in envelopes:
            if self._compress and len(body) >= self._compress_from:
                requests.append((_gzip(body), self._gzip_headers))
            else:
                requests.append((body, self._headers))
        outcomes = self._send_all(requests)
        reached = all(isinstance(outcome, Response) for outcome in outcomes)
        self._down_until = 0.0 if reached else time.monotonic() + _DOWN_FOR
        for index, ((_, categories), (body, _), outcome) in enumerate(zip(envelopes, requests, outcomes)):
            carried = report if index == 0 else None
            if not isinstance(outcome, Response):
                self._failure("network_error", categories, carried, None)
                self._log.warn("network_error", "could not reach Sentry at %s: %r", self.dsn.envelope_url, outcome)
                continue
            self._learn_limits(outcome)  # in order: what the next windows may send
            if 200 <= outcome.status < 300:
                self._sent += 1
                if carried is not None:
                    self._reports_sent += 1
            elif outcome.status == 429:  # the server counted this one itself: not in our client reports
                self._failure("rate_limited", categories, carried, None)
            else:
                self._failure("send_error", categories, carried, outcome, len(body))

    def _send_all(self, requests: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[Union[Response, Exception]]:
        """One outcome per request: pipelined through ``send_many`` when the sender has it."""
        send_many = getattr(self._sender, "send_many", None)
        if send_many is not None:
            try:
                return list(send_many(requests))
            except Exception as exc:
                return [exc] * len(requests)
        outcomes: list[Union[Response, Exception]] = []
        for body, headers in requests:
            try:
                outcomes.append(self._sender.send(body, headers))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _failure(
        self,
        reason: str,
        categories: tuple[str, ...],
        report: Optional[Report],
        response: Optional[Response],
        size: int = 0,
    ) -> None:
        """``categories``: those of the envelope's items, client reports left out."""
        self._failed[reason] = self._failed.get(reason, 0) + 1
        if report is not None:
            self._losses.restore(report)
        if reason != "rate_limited":
            for category in categories:
                self._lose(reason, category)
        if response is not None and response.status == 413:
            self._log.warn("too_large", "Sentry refused an envelope as too large (HTTP 413, %d bytes)", size)
        elif response is not None:
            self._log.warn("send_error", "Sentry refused an envelope: HTTP %d", response.status)
        if response is not None:
            logger.debug("Sentry answered %d %r: %r", response.status, response.headers, response.body)

    def _learn_limits(self, response: Response) -> None:
        for category, seconds in self._limits.update(response.status, response.headers):
            self._log.warn(
                "ratelimit:" + category, "Sentry rate-limits %s for %.0f s", category or "everything", seconds
            )


def _prebuilt(envelopes: list[Envelope]) -> list[Envelope]:
    return envelopes



def _prepare(envelope: Envelope) -> _Prepared:
    return envelope.serialize(), tuple(item.category for item in envelope.items if item.type != "client_report")


_live: weakref.WeakSet[Transport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for transport in list(_live):
        try:
            transport._after_fork()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
