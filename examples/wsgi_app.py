"""A raw WSGI app wrapped by the bridge, served by wsgiref (as in Sentry's WSGI middleware docs).

    python -m examples.wsgi_app        # then open http://127.0.0.1:8000/users/7

Without a framework there is no router to ask, so the app's own route table answers the ``view_name``
hook: ``/users/7`` becomes the span (and Sentry transaction) ``GET /users/{user_id}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

import bridge

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


def user(start_response: StartResponse, user_id: str) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"user {user_id}\n".encode()]


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: str) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


def report(start_response: StartResponse, report_id: str) -> Iterable[bytes]:
    body = build_report(report_id)  # raises: the server answers 500, the bridge records the exception
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


def checkout(start_response: StartResponse) -> Iterable[bytes]:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        start_response("402 Payment Required", [("Content-Type", "text/plain")])
        return [b"payment declined, please try another card\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"paid\n"]


def stream(start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for tick in range(3):
        yield f"tick {tick} {time.time_ns()}\n".encode()


ROUTES: list[tuple[re.Pattern[str], str, Callable[..., Iterable[bytes]]]] = [
    (re.compile(r"/users/(?P<user_id>\d+)"), "/users/{user_id}", user),
    (re.compile(r"/reports/(?P<report_id>\d+)"), "/reports/{report_id}", report),
    (re.compile(r"/checkout"), "/checkout", checkout),
    (re.compile(r"/stream"), "/stream", stream),
]


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    for pattern, _, view in ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return view(start_response, **match.groupdict())
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def view_name(environ: Environ) -> Optional[str]:
    path = environ.get("PATH_INFO", "")
    return next((template for pattern, template, _ in ROUTES if pattern.fullmatch(path)), None)


application = bridge.BridgeMiddleware(app, view_name=view_name)

if __name__ == "__main__":
    from examples.serve import serve

    serve(application, "wsgi-example")
