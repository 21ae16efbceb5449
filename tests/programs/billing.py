"""A billing job, as sentry-sdk users write them: run under sentry-sdk or under the bridge (``PROGRAM_SDK``),
reporting to ``PROGRAM_DSN``. ``python -m tests.programs.billing``; it ends on an uncaught exception."""

from __future__ import annotations

import logging
import os
import sys
import threading

import requests

SDK = os.environ.get("PROGRAM_SDK", "bridge")
DSN = os.environ["PROGRAM_DSN"]
SHUTDOWN_TIMEOUT = float(os.environ.get("PROGRAM_SHUTDOWN_TIMEOUT", "2"))  # the flush at exit, as both default
if SDK == "sentry_sdk":
    import sentry_sdk as sdk

    sdk.init(dsn=DSN, environment="staging", release="billing@2.1.0", shutdown_timeout=SHUTDOWN_TIMEOUT)
else:
    import bridge as sdk

    sdk.init(
        dsn=DSN,
        environment="staging",
        release="billing@2.1.0",
        exporters=["sentry"],
        service_name="billing",
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()  # outgoing calls become spans, hence breadcrumbs (sentry-sdk: stdlib)

logger = logging.getLogger("billing.run")
logger.setLevel(logging.INFO)


def charge(customer: str, amount: str) -> int:
    cents = int(amount)  # raises for "12,50"
    return cents


def worker() -> None:
    logger.info("worker %s started", "w-1")
    raise RuntimeError("worker crashed")


def main() -> None:
    logger.info("starting run %s", 42)
    logger.debug("not a breadcrumb: below INFO")
    sdk.set_tag("job", "billing")
    sdk.set_user({"id": "u-1", "email": "ops@example.com"})
    sdk.set_context("invoice", {"id": 7, "amount": 12.5, "lines": [1, 2]})
    sdk.set_extra("batch", ["a", "b"])
    sdk.add_breadcrumb(category="billing", message="charging customers", level="info", data={"count": 2})
    requests.get(os.environ["PROGRAM_HTTP_URL"], timeout=5)
    logger.error("payment declined for %s", "acme", extra={"customer": "acme"})
    try:
        charge("acme", "12,50")
    except ValueError:
        logger.exception("charge failed")
    with sdk.new_scope() as scope:
        scope.set_tag("phase", "report")
        scope.set_extra("rows", 3)
        scope.fingerprint = ["billing", "report-late"]
        sdk.capture_message("report is late", level="warning")
    try:
        charge("globex", "n/a")
    except ValueError as error:
        sdk.capture_exception(error, tags={"customer": "globex"}, extras={"attempt": 2})
        sdk.capture_exception(error)  # dedupe: the same exception object is reported once
    thread = threading.Thread(target=worker, name="billing-worker")
    thread.start()
    thread.join()
    logger.warning("run ending with %d failures", 3)
    raise SystemError("billing run failed")


if __name__ == "__main__":
    main()
    sys.exit(0)  # pragma: no cover
