"""End to end: the ASGI examples (FastAPI; Django under ASGI with Channels) served by real ASGI servers
(uvicorn, hypercorn) as subprocesses, configured from the environment as users run them, judged as the
WSGI examples are (``tests.test_examples``): OTLP decoded by opentelemetry-proto, every Sentry envelope
through Relay's normalizer, errors stored by a real Bugsink with the example's frames in app. The
escaped exception's Sentry mechanism is ``asgi``.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from tests.asgi_driver import asgi_server
from tests.examples_driver import Reply, collect, get, send
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.test_examples import (
    EXAMPLES,
    Example,
    assert_checkout_error,
    assert_otlp_side,
    assert_report_error,
    assert_sentry_side,
    in_app_frames,
)

FASTAPI = Example("fastapi", "examples.fastapi_app", "app")
DJANGO = EXAMPLES["django"]  # the same views, now behind Django's ASGI handler
TARGETS = {"fastapi": "examples.fastapi_app:app", "django": "examples.django_project.asgi:application"}
ASGI_EXAMPLES = {"fastapi": FASTAPI, "django": DJANGO}
# uvicorn ends a graceful shutdown by raising SIGTERM again (default handler: no at-exit handlers run);
# the bridge flushed at the lifespan shutdown before that. hypercorn exits 0.
GRACEFUL = (0, -signal.SIGTERM)


def environment(name: str, otlp: OtlpReceiver, dsn: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.endpoint,
        "OTEL_SERVICE_NAME": f"{name}-example",
        "SENTRY_DSN": dsn,
    }


def assert_asgi_mechanism(error: Mapping[str, Any]) -> None:
    raised = error["exception"]["values"][-1]
    assert raised["mechanism"]["type"] == "asgi"
    assert raised["mechanism"]["handled"] is False


@pytest.mark.parametrize(("name", "server"), [("fastapi", "uvicorn"), ("django", "uvicorn"), ("fastapi", "hypercorn")])
def test_asgi_example_under_a_real_server(
    name: str, server: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    example = ASGI_EXAMPLES[name]
    with asgi_server(TARGETS[name], environment(name, otlp_receiver, sentry_receiver.dsn), server) as run:
        replies = send(run.port)
    assert run.status in GRACEFUL, "".join(run.log)
    results = collect(replies, otlp_receiver)  # the server's exit flushed the bridge
    assert_otlp_side(results, example)
    assert {s.resource["service.name"] for s in results.all_spans} == {f"{name}-example"}
    assert {s.scope for s in results.all_spans} == {"bridge.asgi"}
    assert_sentry_side(results, sentry_receiver, example)
    [report] = [e for e in sentry_receiver.events() if e["transaction"] == "GET /reports/{report_id}"]
    assert_asgi_mechanism(report)
    if name == "fastapi":  # FastAPI re-raises after its 500 page: the server gets the very same exception
        assert "RuntimeError: report 42 could not be built" in "".join(run.log)


@pytest.mark.parametrize("name", ["fastapi", "django"])
def test_asgi_example_errors_stored_by_bugsink(name: str, otlp_receiver: OtlpReceiver, bugsink: Bugsink) -> None:
    example = ASGI_EXAMPLES[name]
    dsn, project_id = bugsink.new_project(f"asgi-example-{name}")
    with asgi_server(TARGETS[name], environment(name, otlp_receiver, dsn)) as run:
        replies = send(run.port)
        # While the server runs: errors leave on their own (a busy Bugsink digests slower than the
        # shutdown flush's two seconds would wait).
        stored = [event["data"] for event in bugsink.wait_for_events(2, timeout=30, project_id=project_id)]
    assert run.status in GRACEFUL, "".join(run.log)
    results = collect(replies, otlp_receiver)
    assert len(stored) == 2
    by_type = {event["exception"]["values"][-1]["type"]: event for event in stored}
    assert_report_error(by_type["RuntimeError"], results, example)
    assert_asgi_mechanism(by_type["RuntimeError"])
    assert_checkout_error(by_type["ValueError"], results, example)


def test_channels_consumer_exception_reported(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    """A Channels consumer whose ``receive`` raises: the connection closes (1011), its one span records
    the exception (ERROR), and Sentry gets one error, mechanism asgi, with the consumer's frames in app."""
    with asgi_server(TARGETS["django"], environment("django", otlp_receiver, sentry_receiver.dsn)) as run:
        with connect(f"ws://127.0.0.1:{run.port}/ws/echo/", open_timeout=10) as websocket:
            websocket.send("hello")
            assert websocket.recv(timeout=10) == "hello to you"
            websocket.send("boom")
            with pytest.raises(ConnectionClosedError) as closed:
                websocket.recv(timeout=10)
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1011
    assert run.status in GRACEFUL, "".join(run.log)
    assert "RuntimeError: consumer could not handle 'boom'" in "".join(run.log)  # the server saw it escape

    [span] = otlp_receiver.spans()
    assert (span.kind, span.name, span.status) == ("SERVER", "/ws/echo/", "ERROR")
    assert span.attributes["sentry.op"] == "websocket.server"
    assert span.attributes["sentry.tag.ws.consumer"] == "echo"  # set in connect(), a sync handler's thread
    assert span.attributes["error.type"] == "RuntimeError"
    [(name, event)] = span.events
    assert (name, event["exception.type"]) == ("exception", "RuntimeError")

    assert sentry_receiver.problems == []
    [error] = sentry_receiver.events()
    assert error["contexts"]["trace"]["span_id"] == span.span_id
    assert_asgi_mechanism(error)
    cause, raised = error["exception"]["values"]
    assert (cause["type"], raised["value"]) == ("KeyError", "consumer could not handle 'boom'")
    frames = in_app_frames(raised)
    assert {frame["module"] for frame in frames} == {"examples.django_project.consumers"}
    assert [frame["function"] for frame in frames][-2:] == ["receive", "answer"]
    assert [frame["function"] for frame in in_app_frames(cause)][-1] == "parse_command"
    [transaction] = sentry_receiver.transactions()
    assert transaction["transaction"] == "/ws/echo/"
    assert transaction["contexts"]["trace"]["op"] == "websocket.server"
    assert transaction["contexts"]["trace"]["status"] == "internal_error"


def test_fastapi_sixteen_concurrent_requests_keep_their_own_tags_and_errors(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    """Sixteen requests at once on one event loop: each span carries its own tenant tag; each odd tenant's
    error names its own tenant, trace and span; the message a task started by the handler sends belongs
    to the request that started it."""
    tenants = [str(number) for number in range(16)]
    with asgi_server(TARGETS["fastapi"], environment("fastapi", otlp_receiver, sentry_receiver.dsn)) as run:

        def fetch(tenant: str) -> Reply:
            return get(run.port, f"/tenants/{tenant}")

        with ThreadPoolExecutor(16) as pool:
            replies = dict(zip(tenants, pool.map(fetch, tenants)))
    assert run.status in GRACEFUL, "".join(run.log)
    assert {tenant: reply.status for tenant, reply in replies.items()} == {
        tenant: 500 if int(tenant) % 2 else 200 for tenant in tenants
    }

    spans = {span.attributes["url.path"].rsplit("/", 1)[1]: span for span in otlp_receiver.spans()}
    assert sorted(spans) == sorted(tenants)
    for tenant, span in spans.items():
        assert span.name == "GET /tenants/{tenant}"
        assert span.attributes["sentry.tag.tenant"] == tenant
        assert span.status == ("ERROR" if int(tenant) % 2 else "UNSET")
        exceptions = [event for name, event in span.events if name == "exception"]
        messages = [event for name, event in span.events if name == "sentry.message"]
        assert [event["exception.message"] for event in exceptions] == (
            [f"tenant {tenant} has no plan"] if int(tenant) % 2 else []
        )
        assert [event["sentry.message.text"] for event in messages] == [f"audited tenant {tenant}"]

    assert sentry_receiver.problems == []
    by_span = {span.span_id: tenant for tenant, span in spans.items()}
    errors = [event for event in sentry_receiver.events() if "exception" in event]
    assert len(errors) == 8
    for error in errors:
        tenant = by_span[error["contexts"]["trace"]["span_id"]]
        assert error["exception"]["values"][-1]["value"] == f"tenant {tenant} has no plan"
        tags = error["tags"]
        assert (dict(tags) if isinstance(tags, list) else tags)["tenant"] == tenant
        assert error["contexts"]["trace"]["trace_id"] == spans[tenant].trace_id
        assert_asgi_mechanism(error)
    audits = [event for event in sentry_receiver.events() if "logentry" in event]
    assert sorted(event["logentry"]["formatted"] for event in audits) == sorted(
        f"audited tenant {tenant}" for tenant in tenants
    )
    for event in audits:
        tenant = by_span[event["contexts"]["trace"]["span_id"]]
        assert event["logentry"]["formatted"] == f"audited tenant {tenant}"
