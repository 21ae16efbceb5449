from __future__ import annotations

import time
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

import bridge

TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


def user(request: HttpRequest, user_id: int) -> HttpResponse:
    return HttpResponse(f"user {user_id}\n", content_type="text/plain")


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: int) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


def report(request: HttpRequest, report_id: int) -> HttpResponse:
    return HttpResponse(build_report(report_id))  # raises: Django answers 500, the bridge records it


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


def checkout(request: HttpRequest) -> HttpResponse:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        return HttpResponse("payment declined, please try another card\n", status=402, content_type="text/plain")
    return HttpResponse("paid\n", content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def ticks() -> Iterator[str]:
        for tick in range(3):
            yield f"tick {tick} {time.time_ns()}\n"

    return StreamingHttpResponse(ticks(), content_type="text/plain")
