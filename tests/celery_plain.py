"""A Celery app with no bridge code at all, for ``opentelemetry-instrument celery -A tests.celery_plain worker``
(zero-code: the bridge's distro, configurator and ``bridge_celery`` instrumentor do everything)."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("plain", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task(name="example.send_receipt")
def send_receipt(order_id: int) -> str:
    return f"receipt {order_id}"


@app.task(name="example.charge")
def charge(order_id: int) -> str:
    if order_id < 0:
        raise ValueError(f"order {order_id}: card declined")
    return f"charged {order_id}"
