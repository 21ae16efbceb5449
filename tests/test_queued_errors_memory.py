"""A queued error holds its envelope's bytes, not its exception: the exception's traceback holds every frame
it passed through and every local of those frames (a Celery task's: the request, its arguments, Celery's
ExceptionInfo), so an exception waiting in the Sentry queue while Sentry is slow kept ~80 kB alive per
failed task in benchmarks/celery_tasks.py."""

from __future__ import annotations

import gc
import weakref

import bridge
from tests.httpserver import RecordingServer, Reply


class Payload:
    """Stands for what a failing function's frame holds (a request, a big argument)."""

    def __init__(self) -> None:
        self.data = bytearray(1 << 20)


class TaskFailed(Exception):
    pass


def failing_task(payload: Payload) -> None:
    raise TaskFailed(f"could not handle {len(payload.data)} bytes")


def test_an_error_waiting_for_a_hung_sentry_keeps_neither_its_exception_nor_its_frames_alive() -> None:
    with RecordingServer(lambda request: Reply(hang=True)) as hung:
        bridge.init(dsn=f"http://key@127.0.0.1:{hung.port}/1", exporters=["sentry"], service_name="memory")
        payload = Payload()
        held = weakref.ref(payload)
        try:
            failing_task(payload)
        except TaskFailed as exc:
            caught = weakref.ref(exc)
            event_id = bridge.capture_exception(exc)
        del payload
        assert event_id is not None
        [request] = hung.wait_for(1)  # the worker is stuck sending it (the server never answers)
        assert b'"TaskFailed"' in request.data
        gc.collect()
        assert caught() is None and held() is None  # the envelope was built at the capture: bytes only
        bridge.shutdown(timeout=0.2)
