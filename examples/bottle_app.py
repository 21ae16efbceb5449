"""Bottle with the bridge: ``instrument(app)`` installs a plugin and returns the WSGI app to serve.

    python -m examples.bottle_app      # wsgiref on 127.0.0.1:8000

Spans are named after Bottle's rules (``/users/<user_id:int>`` → ``GET /users/{user_id}``); the exception
Bottle's catch-all turns into its 500 page reaches both backends with its frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from bottle import Bottle, response

import bridge
from bridge.frameworks.bottle import instrument

app = Bottle()
TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


@app.get("/users/<user_id:int>")
def user(user_id: int) -> str:
    return f"user {user_id}\n"


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: int) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


@app.get("/reports/<report_id:int>")
def report(report_id: int) -> str:
    return build_report(report_id)  # raises: Bottle answers 500, the bridge records the exception


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


@app.get("/checkout")
def checkout() -> str:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        response.status = 402
        return "payment declined, please try another card\n"
    return "paid\n"


@app.get("/stream")
def stream() -> Iterator[str]:
    response.content_type = "text/plain"
    for tick in range(3):
        yield f"tick {tick} {time.time_ns()}\n"


application = instrument(app)

if __name__ == "__main__":
    from examples.serve import serve

    serve(application, "bottle-example")
