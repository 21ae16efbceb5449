"""Foreign producers for the Celery tests, run as subprocesses (no bridge in them):

    python -m tests.celery_producer sentry BROKER_URL DSN TASK ARGS_JSON   # sentry-sdk with its Celery integration
    python -m tests.celery_producer plain BROKER_URL TASK ARGS_JSON HEADERS_JSON   # headers as given

``sentry`` prints the trace id and the span id of sentry-sdk's ``queue.submit.celery`` span."""

from __future__ import annotations

import json
import sys

from celery import Celery


def main(argv: list[str]) -> None:
    mode, broker = argv[0], argv[1]
    app = Celery("producer", broker=broker)
    app.conf.update(broker_connection_retry_on_startup=True)
    if mode == "sentry":
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration

        dsn, task, args = argv[2], argv[3], json.loads(argv[4])
        sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, integrations=[CeleryIntegration()], default_integrations=False)
        with sentry_sdk.start_transaction(name="sentry-producer", op="task.enqueue") as transaction:
            app.send_task(task, args=args)
            print(transaction.trace_id)
        sentry_sdk.flush(5)
    else:
        task, args, headers = argv[2], json.loads(argv[3]), json.loads(argv[4])
        app.send_task(task, args=args, headers=headers)


if __name__ == "__main__":
    main(sys.argv[1:])
