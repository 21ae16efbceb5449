"""A WSGI shop served three requests under sentry-sdk's WSGI middleware or the bridge's (``PROGRAM_SDK``),
then one message outside any request. ``python -m tests.programs.shop``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults

SDK = os.environ.get("PROGRAM_SDK", "bridge")
DSN = os.environ["PROGRAM_DSN"]
if SDK == "sentry_sdk":
    import sentry_sdk as sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware as Middleware

    sdk.init(dsn=DSN, environment="staging", release="shop@1.0")
else:
    import bridge as sdk
    from bridge import BridgeMiddleware as Middleware

    sdk.init(dsn=DSN, environment="staging", release="shop@1.0", exporters=["sentry"], service_name="shop")

logger = logging.getLogger("shop.web")
logger.setLevel(logging.INFO)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    sdk.set_tag("path", path)
    sdk.set_user({"id": path.strip("/")})
    sdk.set_context("order", {"path": path})
    logger.info("handling %s", path)
    if path == "/fail":
        raise LookupError("no such order")
    if path == "/warn":
        sdk.capture_message("slow order", level="warning")
    if path == "/log":
        logger.error("stock low for %s", "sku-1", stack_info=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def serve(path: str) -> None:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    try:
        body = Middleware(app)(environ, lambda *args: None)
        b"".join(body)
        getattr(body, "close", lambda: None)()
    except LookupError:
        pass


def main() -> None:
    sdk.set_tag("process", "shop")
    logger.info("shop started")
    for path in ("/warn", "/ok", "/fail", "/log"):
        serve(path)
    sdk.capture_message("after requests")
    sdk.flush(5.0)


if __name__ == "__main__":
    main()
