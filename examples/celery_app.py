"""A Celery app and a WSGI app that enqueues its tasks, both traced by the bridge (docs/jobs-and-celery.md).

    redis-server --port 6379 --save "" --appendonly no &
    export SENTRY_DSN=https://KEY@sentry.example/1 OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318
    celery -A examples.celery_app worker --pool=prefork --concurrency=2       # the worker
    gunicorn examples.celery_app:wsgi_app                                     # GET /charge/42 enqueues

Or with no bridge code at all: ``opentelemetry-instrument celery -A examples.celery_app worker`` (the
bridge's distro configures it and its ``bridge_celery`` instrumentor traces the tasks; the lines below
then see an active configuration and leave it alone).

Each request that enqueues gets a PRODUCER span; each task run a CONSUMER span continuing the request's
trace in the worker child, and a Sentry transaction named after the task. ``charge`` fails for a negative
order: one Sentry error carrying the request's trace id and the task's name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

from celery import Celery

import bridge
from bridge import setup
from bridge.frameworks.celery import instrument

app = Celery("example", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue=os.environ.get("CELERY_QUEUE", "celery"),
)

if setup.active() is None:  # under opentelemetry-instrument the bridge's configurator already did this
    bridge.init(service_name=os.environ.get("OTEL_SERVICE_NAME", "celery-example"))
instrument(app)


class PaymentDeclined(Exception):
    pass


@app.task(name="example.charge")
def charge(order_id: int) -> str:
    if order_id < 0:
        raise PaymentDeclined(f"order {order_id}: card declined")
    return f"charged {order_id}"


@app.task(name="example.send_receipt")
def send_receipt(order_id: int) -> str:
    return f"receipt {order_id}"


@app.task(bind=True, name="example.flaky", max_retries=1, default_retry_delay=0)
def flaky(self: Any, order_id: int) -> str:
    """Fails once, is retried once (as sentry-sdk reports it: the first run ``aborted``, no error event)."""
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("gateway timeout"), countdown=0)
    return f"charged {order_id} on retry"


@bridge.monitor("nightly-settlement", schedule="0 3 * * *", max_runtime=30)
def settle() -> None:
    """A cron job (run it from cron or beat): in_progress and ok/error check-ins for Sentry Crons."""
    with bridge.trace(name="settle-batch", op="task.settle"):
        pass


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``GET /charge/<order_id>`` enqueues ``charge``; anything else enqueues ``send_receipt``."""
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/charge/"):
        charge.delay(int(path.rsplit("/", 1)[1]))
    else:
        send_receipt.delay(1)
    start_response("202 Accepted", [("Content-Type", "text/plain")])
    return [b"queued\n"]


wsgi_app = bridge.BridgeMiddleware(wsgi_app)  # type: ignore[assignment]
