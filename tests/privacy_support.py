"""The request of the privacy tests, shared with the sentry-sdk process that serves the same request.

No ``bridge`` import here: ``python -m tests.privacy_support DSN`` serves the requests under sentry-sdk's own
``SentryWsgiMiddleware`` (send_default_pii=True) in a process of its own, so that sentry-sdk's global state
never meets the bridge's. Canary values are written in pieces, so that no source line (which Sentry frames
quote as context) holds one whole.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Callable

from werkzeug.test import EnvironBuilder


class Crash(Exception):
    pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()  # the app reads the body, as apps do
    if environ["PATH_INFO"] == "/crash":
        raise Crash("the app crashed")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", SET_COOKIE)])
    return [b"ok"]


# ------------------------------------------------------------------------------------------------------------
# (the canaries are far below the app: its frames' source context never quotes them)
#
#
#
#
#
C = "cAnArY"
CLIENT_IP = "203.0.113." + "99"
FORWARDED_IP = "198.51.100." + "77"
SET_COOKIE = "session=" + C + "-setcookie"
REQUEST_HEADERS = {
    "Cookie": "sid=" + C + "-cookie; theme=dark",
    "Authorization": "Bearer " + C + "-auth",
    "X-Api-Key": C + "-apikey",
    "X-Forwarded-For": FORWARDED_IP + ", 10.0.0.1",
    "X-Secret-Token": C + "-xsecret",
    "User-Agent": "visible-agent/1.0",
}
QUERY = "password=" + C + "-password&token=" + C + "-token&page=visible"
BODY = C + "-body"
CANARIES = [C + suffix for suffix in ("-cookie", "-auth", "-apikey", "-xsecret", "-password", "-token", "-body")]
CANARIES += [C + "-setcookie", CLIENT_IP, FORWARDED_IP]
CAPTURED = "Cookie,Authorization,X-Api-Key,X-Forwarded-For,X-Secret-Token,User-Agent"


def environ(path: str) -> dict[str, Any]:
    return EnvironBuilder(
        path=path,
        method="POST",
        query_string=QUERY,
        headers=REQUEST_HEADERS,
        data=BODY,
        environ_overrides={"REMOTE_ADDR": CLIENT_IP},
    ).get_environ()


def serve(application: Callable[..., Any]) -> None:
    """``/ok`` then ``/crash``, straight through ``application`` (its exception caught, as a server does)."""
    for path in ("/ok", "/crash"):
        try:
            body = application(environ(path), lambda *args: None)
            list(body)
            getattr(body, "close", lambda: None)()
        except Crash:
            pass


def main(dsn: str) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    sentry_sdk.init(dsn=dsn, send_default_pii=True, traces_sample_rate=1.0, default_integrations=False)
    serve(SentryWsgiMiddleware(app))
    sentry_sdk.flush(10)


if __name__ == "__main__":
    main(sys.argv[1])
