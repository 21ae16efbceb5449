"""Celery end to end with real parts: Debian's redis-server as the broker, real ``celery worker`` prefork
processes (concurrency 2; and, zero-code under ``opentelemetry-instrument``, ``--max-tasks-per-child=1``),
the example's WSGI app through ``BridgeMiddleware`` enqueuing, a sentry-sdk producer in a subprocess, the
OTLP receiver (opentelemetry-proto), the Sentry receiver (Relay judges every event) and Bugsink.

Each worker starts once for the module; tests isolate by clearing the receivers and waiting for what they
expect (the receivers' conditions: no sleeps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

pytest.importorskip("celery")
pytest.importorskip("opentelemetry.instrumentation.celery")

from werkzeug.test import Client  # noqa: E402

import bridge  # noqa: E402
from tests.peers.bugsink import Bugsink  # noqa: E402
from tests.peers.otlp import OtlpReceiver, SpanView  # noqa: E402
from tests.peers.redis import RedisServer  # noqa: E402
from tests.peers.sentry import SentryReceiver  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Worker:
    """``celery worker`` in a subprocess; ready when it logs ``ready.``; stopped by its PID (warm shutdown)."""

    def __init__(self, workdir: Path, name: str, command: list[str], env: dict[str, str]) -> None:
        self.log = workdir / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
        self.env = {**base, "PYTHONPATH": str(ROOT), **env}
        self.command = command
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes():  # its readiness line, like a health check
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"worker {self.name} not ready:\n{self.text()}"
            time.sleep(0.1)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def worker_command(*extra: str, zero_code: bool = False, module: str = "tests.celery_tasks") -> list[str]:
    celery = [sys.executable, "-m", "celery", "-A", module, "worker", "--pool=prefork", "--concurrency=2"]
    celery += ["--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel=INFO", *extra]
    return [str(BIN / "opentelemetry-instrument"), *celery] if zero_code else celery


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[OtlpReceiver, SentryReceiver]]:
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        yield otlp, sentry
        otlp.assert_all_valid()
        sentry.assert_all_valid()


@pytest.fixture(scope="module")
def worker(
    redis: RedisServer, receivers: tuple[OtlpReceiver, SentryReceiver], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    otlp, sentry = receivers
    env = {
        "CELERY_BROKER_URL": redis.url,
        "SENTRY_DSN": sentry.dsn,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.endpoint,
        "OTEL_SERVICE_NAME": "celery-worker",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = Worker(tmp_path_factory.mktemp("worker"), "worker", worker_command(), env).start()
    yield process
    process.stop()


@pytest.fixture
def tasks(
    redis: RedisServer, receivers: tuple[OtlpReceiver, SentryReceiver], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The caller's side in this process: the bridge pointed at the module's receivers, the example's tasks."""
    otlp, sentry = receivers
    otlp.clear()
    sentry.clear()
    monkeypatch.setenv("CELERY_BROKER_URL", redis.url)
    bridge.init(otlp_endpoint=otlp.endpoint, dsn=sentry.dsn, service_name="celery-caller")
    from examples import celery_app
    from tests import celery_tasks

    return SimpleNamespace(
        app=celery_tasks.app,
        charge=celery_tasks.charge,
        flaky=celery_tasks.flaky,
        send_receipt=celery_tasks.send_receipt,
        die=celery_tasks.die,
        wsgi_app=celery_app.wsgi_app,
        otlp=otlp,
        sentry=sentry,
    )


def receivers_of(tasks: Any) -> tuple[OtlpReceiver, SentryReceiver]:
    return tasks.otlp, tasks.sentry


def wait_until(receiver: Any, found: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    with receiver._arrived:
        assert receiver._arrived.wait_for(found, timeout), f"timed out waiting for {what}"


def consumer_spans(otlp: OtlpReceiver, task: str) -> list[SpanView]:
    return [s for s in otlp.spans() if s.kind == "CONSUMER" and s.attributes.get("celery.task_name") == task]


def task_transactions(sentry: SentryReceiver, task: str) -> list[dict[str, Any]]:
    return [t for t in sentry.transactions() if t["transaction"] == task]


def test_a_request_that_enqueues_a_failing_task(worker: Worker, tasks: Any) -> None:
    otlp, sentry = receivers_of(tasks)
    Client(tasks.wsgi_app).get("/charge/-7", buffered=True)
    assert bridge.flush(5)
    wait_until(sentry, lambda: len(sentry.events()) >= 1 and len(task_transactions(sentry, "example.charge")) >= 1,
               "the task's error and transaction")  # fmt: skip
    wait_until(otlp, lambda: len(consumer_spans(otlp, "example.charge")) >= 1, "the CONSUMER span")
    spans = otlp.spans()
    [server] = [s for s in spans if s.kind == "SERVER"]
    [producer] = [s for s in spans if s.kind == "PRODUCER"]
    [consumer] = consumer_spans(otlp, "example.charge")
    assert producer.name == "apply_async/example.charge" and producer.parent_span_id == server.span_id
    assert consumer.name == "run/example.charge" and consumer.parent_span_id == producer.span_id
    assert consumer.trace_id == server.trace_id and consumer.status == "ERROR"
    assert consumer.resource["service.name"] == "celery-worker"

    [error] = sentry.events()
    assert error["contexts"]["trace"]["trace_id"] == server.trace_id
    assert error["transaction"] == "example.charge"
    [value] = error["exception"]["values"]
    assert value["type"] == "PaymentDeclined" and value["value"] == "order -7: card declined"
    assert value["mechanism"]["type"] == "celery" and value["mechanism"]["handled"] is False
    assert any(f["function"] == "charge" and f.get("in_app") for f in value["stacktrace"]["frames"])
    celery_context = error["contexts"]["celery"]
    assert celery_context["task_id"] == consumer.attributes["messaging.message.id"]
    assert celery_context["retries"] == 0 and celery_context["queue"] == "celery"

    [transaction] = task_transactions(sentry, "example.charge")
    assert transaction["transaction_info"] == {"source": "task"}
    assert transaction["contexts"]["trace"]["op"] == "queue.task.celery"
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert transaction["contexts"]["trace"]["trace_id"] == server.trace_id
    [request] = [t for t in sentry.transactions() if t["transaction"].startswith("GET ")]
    assert [s["op"] for s in request["spans"]] == ["queue.submit.celery"]


def test_retries_are_reported_as_sentry_sdk_does(worker: Worker, tasks: Any) -> None:
    otlp, sentry = receivers_of(tasks)
    tasks.flaky.delay(5)
    wait_until(sentry, lambda: len(task_transactions(sentry, "example.flaky")) >= 2, "two runs")
    statuses = sorted(t["contexts"]["trace"]["status"] for t in task_transactions(sentry, "example.flaky"))
    assert statuses == ["aborted", "ok"]
    retried = [t for t in task_transactions(sentry, "example.flaky") if t["contexts"]["trace"]["status"] == "ok"]
    assert retried[0]["contexts"]["celery"]["retries"] == 1
    assert sentry.events() == []  # a retry is not an error


def test_a_sentry_sdk_producer_s_trace_continues_in_the_worker(
    worker: Worker, tasks: Any, redis: RedisServer
) -> None:
    otlp, sentry = receivers_of(tasks)
    done = subprocess.run(
        [sys.executable, "-m", "tests.celery_producer", "sentry", redis.url, sentry.dsn, "example.send_receipt", "[3]"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    trace_id = done.stdout.strip()
    wait_until(sentry, lambda: len(task_transactions(sentry, "example.send_receipt")) >= 1, "the task's transaction")
    [transaction] = task_transactions(sentry, "example.send_receipt")
    assert transaction["contexts"]["trace"]["trace_id"] == trace_id
    [producer] = [t for t in sentry.transactions() if t["transaction"] == "sentry-producer"]
    submit_ids = {s["span_id"] for s in producer["spans"]}
    assert transaction["contexts"]["trace"]["parent_span_id"] in submit_ids


def test_malformed_foreign_headers_start_a_new_trace(worker: Worker, tasks: Any, redis: RedisServer) -> None:
    otlp, sentry = receivers_of(tasks)
    headers = {"traceparent": "00-zz-yy-01", "sentry-trace": "not-a-trace", "baggage": "sentry-trace_id=%%%,=,,"}
    subprocess.run(
        [sys.executable, "-m", "tests.celery_producer", "plain", redis.url, "example.send_receipt", "[4]",
         json.dumps(headers)],
        cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    wait_until(sentry, lambda: len(task_transactions(sentry, "example.send_receipt")) >= 1, "the task's transaction")
    [transaction] = task_transactions(sentry, "example.send_receipt")
    assert "parent_span_id" not in transaction["contexts"]["trace"]
    assert int(transaction["contexts"]["trace"]["trace_id"], 16) != 0


def test_an_unsampled_failing_task_still_names_its_task_in_the_error(
    worker: Worker, tasks: Any, redis: RedisServer
) -> None:
    """A producer's trace that was not sampled: the worker's run records nothing (no transaction, no span),
    yet its error event carries the trace, the task's name and ``contexts.celery``, as sentry-sdk's does."""
    otlp, sentry = receivers_of(tasks)
    trace_id = "5b8efff798038103d269b633813fc60c"
    headers = {"traceparent": f"00-{trace_id}-eee19b7ec3c1b174-00"}  # flags 00: not sampled
    subprocess.run(
        [sys.executable, "-m", "tests.celery_producer", "plain", redis.url, "example.charge", "[-9]",
         json.dumps(headers)],
        cwd=ROOT, timeout=60, check=True,
    )  # fmt: skip
    wait_until(sentry, lambda: len(sentry.events()) >= 1, "the task's error")
    [error] = sentry.events()
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    assert error["transaction"] == "example.charge"
    assert error["contexts"]["celery"]["task_name"] == "example.charge" and error["contexts"]["celery"]["task_id"]
    assert error["exception"]["values"][-1]["type"] == "PaymentDeclined"
    assert task_transactions(sentry, "example.charge") == []  # unsampled: no transaction
    assert consumer_spans(otlp, "example.charge") == []


def test_arguments_the_serializer_refuses_end_the_producer_span(tasks: Any) -> None:
    from kombu.exceptions import EncodeError
    from opentelemetry import trace as trace_api

    otlp, sentry = receivers_of(tasks)
    with bridge.trace(name="enqueue") as enqueue:
        with pytest.raises(EncodeError):
            tasks.charge.delay(object())
        assert trace_api.get_current_span() is enqueue  # the failed publish left nothing current
    assert bridge.flush(5)
    spans = {s.name: s for s in otlp.spans()}
    producer = spans["apply_async/example.charge"]
    assert producer.status == "ERROR" and producer.parent_span_id == spans["enqueue"].span_id
    assert [name for name, _ in producer.events] == ["exception"]


def test_a_worker_child_killed_mid_task_is_counted_and_reported(worker: Worker, tasks: Any) -> None:
    otlp, sentry = receivers_of(tasks)
    tasks.die.delay()
    # other events may come too (billiard logs the dead child at ERROR: the logging integration reports it)
    wait_until(sentry, lambda: any(e.get("transaction") == "tests.die" for e in sentry.events()), "the lost run")
    [error] = [e for e in sentry.events() if e.get("transaction") == "tests.die"]
    assert error["exception"]["values"][-1]["type"] == "WorkerLostError"
    wait_until(otlp, lambda: len(consumer_spans(otlp, "tests.die")) >= 1, "the replacement span")
    [span] = consumer_spans(otlp, "tests.die")
    assert span.attributes["celery.worker_lost"] is True and span.status == "ERROR"
    assert "such runs so far" in worker.text()


def test_beat_entries_become_cron_monitors(worker: Worker, tasks: Any) -> None:
    from celery.beat import Scheduler
    from celery.schedules import crontab

    from bridge.frameworks.celery import instrument

    otlp, sentry = receivers_of(tasks)
    instrument(tasks.app, monitor_beat_tasks=True)
    tasks.app.conf.beat_schedule = {
        "Nightly Receipts": {"task": "example.send_receipt", "schedule": crontab(minute="0", hour="3"), "args": (9,)}
    }
    scheduler = Scheduler(tasks.app, lazy=True)
    scheduler.setup_schedule()
    entry = scheduler.schedule["Nightly Receipts"]
    with tasks.app.producer_or_acquire() as producer:
        scheduler.apply_entry(entry, producer=producer)
    assert bridge.flush(5)
    wait_until(sentry, lambda: len(sentry.items("check_in")) >= 2, "both check-ins")
    started, finished = sentry.items("check_in")
    assert started["monitor_slug"] == finished["monitor_slug"] == "nightly-receipts"
    assert (started["status"], finished["status"]) == ("in_progress", "ok")
    assert started["check_in_id"] == finished["check_in_id"]
    assert started["monitor_config"]["schedule"] == {"type": "crontab", "value": "0 3 * * *"}
    wait_until(sentry, lambda: len(task_transactions(sentry, "example.send_receipt")) >= 1, "the run's transaction")
    [transaction] = task_transactions(sentry, "example.send_receipt")
    assert finished["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]


def test_zero_code_recycled_children_lose_nothing_and_bugsink_stores_the_error(
    redis: RedisServer, receivers: tuple[OtlpReceiver, SentryReceiver], bugsink: Bugsink, tmp_path: Path
) -> None:
    """``opentelemetry-instrument celery ... --max-tasks-per-child=1`` on a module with no bridge code; the
    batch delay is an hour, so only the flush of each exiting child can deliver its spans."""
    otlp, _ = receivers
    otlp.clear()
    dsn, project_id = bugsink.new_project("celery-recycling")
    env = {
        "CELERY_BROKER_URL": redis.url,
        "SENTRY_DSN": dsn,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.endpoint,
        "OTEL_SERVICE_NAME": "celery-recycled",
        "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    }
    command = worker_command("--max-tasks-per-child=1", "-Q", "recycle", zero_code=True, module="tests.celery_plain")
    process = Worker(tmp_path, "recycled", command, env).start()
    try:
        from celery import Celery

        app = Celery("caller", broker=redis.url)
        for order in range(4):
            app.send_task("example.send_receipt", args=[order], queue="recycle")
        app.send_task("example.charge", args=[-1], queue="recycle")
        wait_until(otlp, lambda: len([s for s in otlp.spans() if s.kind == "CONSUMER"]) >= 5, "5 CONSUMER spans")
        [stored] = bugsink.wait_for_events(1, timeout=20, project_id=project_id)
    finally:
        process.stop()
    consumers = [s for s in otlp.spans() if s.kind == "CONSUMER"]
    names = sorted(s.attributes["celery.task_name"] for s in consumers)
    assert names == ["example.charge"] + ["example.send_receipt"] * 4
    assert {s.resource["service.name"] for s in consumers} == {"celery-recycled"}
    event = stored["data"]
    assert event["transaction"] == "example.charge"
    assert event["exception"]["values"][-1]["mechanism"]["type"] == "celery"
    [charge] = [s for s in consumers if s.attributes["celery.task_name"] == "example.charge"]
    assert event["contexts"]["trace"]["trace_id"] == charge.trace_id


def test_the_example_s_cron_job_checks_in_with_its_schedule(tasks: Any) -> None:
    from examples import celery_app

    otlp, sentry = receivers_of(tasks)
    celery_app.settle()
    assert bridge.flush(5)
    started, finished = sentry.items("check_in")
    assert started["monitor_slug"] == finished["monitor_slug"] == "nightly-settlement"
    assert (started["status"], finished["status"]) == ("in_progress", "ok")
    assert started["monitor_config"] == {"schedule": {"type": "crontab", "value": "0 3 * * *"}, "max_runtime": 30}
    [transaction] = [t for t in sentry.transactions() if t["transaction"] == "examples.celery_app.settle"]
    assert [s["description"] for s in transaction["spans"]] == ["settle-batch"]
