"""Flask with the bridge: ``instrument(app)`` wraps ``app.wsgi_app`` and hooks Flask's signals.

    python -m examples.flask_app                                   # wsgiref on 127.0.0.1:8000
    gunicorn --workers 1 --bind 127.0.0.1:8000 examples.flask_app:app

Spans are named after Flask's rules (``/users/<int:user_id>`` → ``GET /users/{user_id}``), and the
exception Flask turns into its 500 page reaches both backends with its frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Flask, Response

import bridge
from bridge.frameworks.flask import instrument

app = Flask(__name__)
TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


@app.get("/users/<int:user_id>")
def user(user_id: int) -> str:
    return f"user {user_id}\n"


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: int) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


@app.get("/reports/<int:report_id>")
def report(report_id: int) -> str:
    return build_report(report_id)  # raises: Flask answers 500, the bridge records the exception


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


@app.get("/checkout")
def checkout() -> tuple[str, int]:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        return "payment declined, please try another card\n", 402
    return "paid\n", 200


@app.get("/stream")
def stream() -> Response:
    def ticks() -> Iterator[str]:
        for tick in range(3):
            yield f"tick {tick} {time.time_ns()}\n"

    return Response(ticks(), mimetype="text/plain")


instrument(app)

if __name__ == "__main__":
    from examples.serve import serve

    serve(app, "flask-example")
