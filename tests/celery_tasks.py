"""The worker module of the Celery tests: the example's app and tasks, plus a task that kills its own child."""

from __future__ import annotations

import os
import signal

from examples.celery_app import app, charge, flaky, send_receipt

__all__ = ["app", "charge", "die", "flaky", "send_receipt"]


@app.task(name="tests.die")
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # the prefork child dies mid-task; the main process sees WorkerLostError
