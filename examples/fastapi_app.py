"""FastAPI with the bridge: one line wraps the app (``app = bridge.BridgeASGIMiddleware(api)``).

    uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000
    hypercorn examples.fastapi_app:app --bind 127.0.0.1:8000

The bridge configures itself from ``OTEL_*`` and ``SENTRY_*`` on the first request. Spans are named after
FastAPI's routes (``/users/{user_id}`` → ``GET /users/{user_id}``); the exception FastAPI turns into its
500 reaches both backends with its frames (mechanism ``asgi``); ``/tenants/{tenant}`` shows that
concurrent requests, and the tasks they start, keep their own tags and errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

import bridge

api = FastAPI()
TEMPLATES: dict[str, str] = {"invoice": "Invoice {report_id}"}


@api.get("/users/{user_id}", response_class=PlainTextResponse)
async def user(user_id: int) -> str:
    return f"user {user_id}\n"


def load_template(name: str) -> str:
    return TEMPLATES[name]  # KeyError for a template nobody wrote


def build_report(report_id: int) -> str:
    try:
        return load_template("quarterly").format(report_id=report_id)
    except KeyError as exc:
        raise RuntimeError(f"report {report_id} could not be built") from exc


@api.get("/reports/{report_id}", response_class=PlainTextResponse)
async def report(report_id: int) -> str:
    return build_report(report_id)  # raises: FastAPI answers 500, the bridge records the exception


def charge_card(amount: int) -> None:
    raise ValueError(f"card declined for {amount} EUR")


@api.get("/checkout")
async def checkout() -> PlainTextResponse:
    bridge.set_tag("checkout.step", "payment")
    try:
        charge_card(42)
    except ValueError:
        bridge.capture_exception()  # handled: reported, and the customer gets a proper answer
        return PlainTextResponse("payment declined, please try another card\n", status_code=402)
    return PlainTextResponse("paid\n")


@api.get("/stream")
async def stream() -> StreamingResponse:
    async def ticks() -> AsyncIterator[str]:
        for tick in range(3):
            yield f"tick {tick} {time.time_ns()}\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(ticks(), media_type="text/plain")


async def audit(tenant: str) -> None:
    await asyncio.sleep(0.01)
    bridge.capture_message(f"audited tenant {tenant}")  # a task the handler started: still its request


@api.get("/tenants/{tenant}", response_class=PlainTextResponse)
async def tenant(tenant: str) -> str:
    bridge.set_tag("tenant", tenant)
    await asyncio.gather(asyncio.create_task(audit(tenant)), asyncio.sleep(0.02))  # other requests run meanwhile
    if int(tenant) % 2:
        raise LookupError(f"tenant {tenant} has no plan")
    return f"tenant {tenant}\n"


app = bridge.BridgeASGIMiddleware(api)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run("examples.fastapi_app:app", host="127.0.0.1", port=8000)
