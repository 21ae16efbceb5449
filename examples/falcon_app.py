"""Falcon with the bridge: ``instrument(app)`` adds a middleware and an error handler.

    python -m examples.falcon_app      # wsgiref on 127.0.0.1:8000

Spans are named after URI templates (``/users/{user_id:int}`` → ``GET /users/{user_id}``); the exception
Falcon renders as its 500 reaches both backends with its frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import falcon

import bridge
from bridge.frameworks.falcon import instrument

TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


class Users:
    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: int) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"user {user_id}\n"


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: int) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


class Reports:
    def on_get(self, req: falcon.Request, resp: falcon.Response, report_id: int) -> None:
        resp.text = build_report(report_id)  # raises: Falcon answers 500, the bridge records the exception


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


class Checkout:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        bridge.set_tag("checkout.step", "payment")
        resp.content_type = falcon.MEDIA_TEXT
        try:
            charge_card(42)
        except ValueError:
            bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
            resp.status = falcon.HTTP_402
            resp.text = "payment declined, please try another card\n"
            return
        resp.text = "paid\n"


class Stream:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def ticks() -> Iterator[bytes]:
            for tick in range(3):
                yield f"tick {tick} {time.time_ns()}\n".encode()

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = ticks()


app = falcon.App()
app.add_route("/users/{user_id:int}", Users())
app.add_route("/reports/{report_id:int}", Reports())
app.add_route("/checkout", Checkout())
app.add_route("/stream", Stream())
application = instrument(app)

if __name__ == "__main__":
    from examples.serve import serve

    serve(application, "falcon-example")
