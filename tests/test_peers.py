"""The real peers work with real clients: Bugsink and the Sentry receiver with sentry-sdk, the OTLP receiver
with opentelemetry-sdk's OTLPSpanExporter, all over real HTTP on loopback."""
from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import sentry_sdk
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.httpserver import Reply
from tests.judges import assert_valid_envelope
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import PUBLIC_KEY, SentryReceiver, rate_limited

# -- helpers ----------------------------------------------------------------------------------------------------


@contextmanager
def sentry_client(dsn: str, **options: Any) -> Iterator[None]:
    """Real sentry-sdk pointed at ``dsn``; flushed, closed and unset afterwards (it is global state)."""
    sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False, **options)
    try:
        yield
    finally:
        sentry_sdk.flush(timeout=10)
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def fail_in_checkout() -> None:
    raise ValueError("card declined")  # this line is the context_line of the innermost frame


def envelope(item_type: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    header = {"event_id": payload.get("event_id"), "sent_at": "2024-01-01T00:00:00Z"}
    item_header = {"type": item_type, "length": len(data)}
    return b"\n".join([json.dumps(header).encode(), json.dumps(item_header).encode(), data]) + b"\n"


def transaction(start: float, end: float) -> dict[str, Any]:
    return {
        "type": "transaction",
        "event_id": uuid.uuid4().hex,
        "transaction": "GET /checkout",
        "platform": "python",
        "start_timestamp": start,
        "timestamp": end,
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "op": "http.server"}},
        "spans": [],
    }


def error_event(**fields: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "timestamp": time.time(), "platform": "python", "level": "error", **fields}


def post_envelope(dsn: str, body: bytes, key: str = "") -> http.client.HTTPResponse:
    parts = urlsplit(dsn)
    assert parts.hostname and parts.port
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    auth = f"Sentry sentry_key={key or parts.username}, sentry_version=7, sentry_client=peers-test/1"
    headers = {"Content-Type": "application/x-sentry-envelope", "X-Sentry-Auth": auth}
    connection.request("POST", f"/api{parts.path}/envelope/", body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


# -- Bugsink ----------------------------------------------------------------------------------------------------


def test_bugsink_stores_an_error_from_real_sentry_sdk(bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("sdk-error")
    with sentry_client(dsn):
        try:
            fail_in_checkout()
        except ValueError as exc:
            event_id = sentry_sdk.capture_exception(exc)
    assert event_id

    [stored] = bugsink.wait_for_events(1, project_id=project_id)
    assert stored == bugsink.event(event_id, project_id=project_id)
    assert uuid.UUID(stored["event_id"]) == uuid.UUID(event_id)
    [exception] = stored["data"]["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "card declined")
    innermost = exception["stacktrace"]["frames"][-1]
    assert innermost["function"] == "fail_in_checkout"
    assert innermost["context_line"].strip().startswith('raise ValueError("card declined")')
    assert len(stored["data"]["contexts"]["trace"]["trace_id"]) == 32
    [issue] = bugsink.issues(project_id)
    assert (issue["calculated_type"], issue["calculated_value"]) == ("ValueError", "card declined")
    # the raw envelope is kept as it arrived, after sentry-sdk's gzip was undone
    [raw] = bugsink.raw_envelopes(project_id)
    assert json.loads(raw.partition(b"\n")[0])["event_id"] == event_id


def test_bugsink_rate_limits_transactions_and_keeps_them_raw(bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("transactions")
    now = time.time()
    body = envelope("transaction", transaction(now - 0.25, now))
    assert_valid_envelope(body)  # Relay has nothing against it: Bugsink drops it because it stores errors only

    response = post_envelope(dsn, body)

    assert response.status == 200
    assert "transaction" in (response.getheader("X-Sentry-Rate-Limits") or "")
    assert bugsink.raw_envelopes(project_id) == [body]
    assert bugsink.project(project_id)["digested_event_count"] == 0


def test_bugsink_answers_200_but_stores_only_what_its_schema_accepts(bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("strict")
    bad_level = error_event(level="bogus", logentry={"formatted": "bad level"})
    plain_message = error_event(message="a plain string, as sentry-sdk's capture_message sends it")
    good = error_event(logentry={"message": "good %s", "params": ["one"], "formatted": "good one"})

    statuses = [post_envelope(dsn, envelope("event", event)).status for event in (bad_level, plain_message, good)]

    assert statuses == [200, 200, 200]
    [stored] = bugsink.wait_for_events(1, project_id=project_id)  # digestion is eager: the others are gone
    assert stored["data"]["event_id"] == good["event_id"]
    assert len(bugsink.raw_envelopes(project_id)) == 3


# -- OTLP receiver ----------------------------------------------------------------------------------------------


def test_otlp_receiver_decodes_spans_from_the_real_exporter_with_gzip(otlp_receiver: OtlpReceiver) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "peers-test"}))
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.endpoint, compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.peers", "1.2.3")
    with tracer.start_as_current_span(
        "GET /items", kind=SpanKind.SERVER, attributes={"http.request.method": "GET", "tags": ("a", "b")}
    ) as server:
        with tracer.start_as_current_span("SELECT items") as child:
            child.add_event("rows", {"count": 3})
        server.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    sent_child, sent_server = otlp_receiver.wait_for_spans(2)  # SimpleSpanProcessor exports each at its end
    context = server.get_span_context()
    assert (sent_server.trace_id, sent_server.span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert (sent_server.name, sent_server.kind, sent_server.parent_span_id) == ("GET /items", "SERVER", "")
    assert (sent_server.status, sent_server.status_message) == ("ERROR", "boom")
    assert sent_server.attributes == {"http.request.method": "GET", "tags": ["a", "b"]}
    assert sent_server.resource["service.name"] == "peers-test"
    assert (sent_server.scope, sent_server.scope_version) == ("tests.peers", "1.2.3")
    assert (sent_child.kind, sent_child.status, sent_child.parent_span_id) == ("INTERNAL", "UNSET", sent_server.span_id)
    assert sent_child.parent_is_remote is False
    assert sent_child.events == [("rows", {"count": 3})]
    assert sent_child.start_time_unix_nano <= sent_child.end_time_unix_nano
    assert {r.headers.get("content-encoding") for r in otlp_receiver.requests} == {"gzip"}


def test_otlp_receiver_answers_as_told_and_keeps_what_it_refused(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.responder = lambda request: Reply(400, {"Content-Type": "text/plain"}, b"no")
    span = TracerProvider().get_tracer("tests.peers").start_span("refused")
    span.end()

    result = OTLPSpanExporter(endpoint=otlp_receiver.endpoint).export([span])  # type: ignore[list-item]

    assert result is SpanExportResult.FAILURE  # 400 is not retryable: one request
    assert [s.name for s in otlp_receiver.spans()] == ["refused"]
    assert otlp_receiver.spans(accepted_only=True) == []


def test_otlp_receiver_reads_otlp_json(otlp_receiver: OtlpReceiver) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json"}}]},
            "scopeSpans": [{
                "scope": {"name": "hand"},
                "spans": [{
                    "traceId": trace_id, "spanId": span_id, "name": "GET /", "kind": 2,
                    "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
                    "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}],
                    "status": {"code": 1},
                }],
            }],
        }]
    }
    connection = http.client.HTTPConnection("127.0.0.1", otlp_receiver.port, timeout=10)
    connection.request("POST", "/v1/traces", json.dumps(document), {"Content-Type": "application/json"})
    response = connection.getresponse()

    assert (response.status, response.read()) == (200, b"{}")
    [span] = otlp_receiver.wait_for_spans(1)
    assert (span.trace_id, span.span_id, span.kind, span.status) == (trace_id, span_id, "SERVER", "OK")
    assert span.attributes == {"http.response.status_code": 200}
    assert span.end_time_unix_nano - span.start_time_unix_nano == 500_000_000
    assert span.resource == {"service.name": "json"}


def test_otlp_receiver_lists_what_it_cannot_decode(otlp_receiver: OtlpReceiver) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", otlp_receiver.port, timeout=10)
    connection.request("POST", "/v1/traces", b"\xff\xffnot protobuf", {"Content-Type": "application/x-protobuf"})

    assert connection.getresponse().status == 400
    [problem] = otlp_receiver.take_problems()  # sent on purpose: the fixture's teardown check stays quiet
    assert "undecodable" in problem
    assert otlp_receiver.spans() == []


# -- Sentry receiver --------------------------------------------------------------------------------------------


def test_sentry_receiver_accepts_what_real_sentry_sdk_sends(sentry_receiver: SentryReceiver) -> None:
    with (
        sentry_client(sentry_receiver.dsn, traces_sample_rate=1.0),
        sentry_sdk.start_transaction(name="GET /checkout", op="http.server"),
    ):
        try:
            fail_in_checkout()
        except ValueError as exc:
            event_id = sentry_sdk.capture_exception(exc)

    [event] = sentry_receiver.wait_for_items("event", 1)
    [sent_transaction] = sentry_receiver.wait_for_items("transaction", 1)
    assert event["event_id"] == event_id
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["contexts"]["trace"]["trace_id"] == sent_transaction["contexts"]["trace"]["trace_id"]
    assert {r.headers.get("content-encoding") for r in sentry_receiver.requests} == {"gzip"}
    sentry_receiver.assert_all_valid()


def test_sentry_receiver_refuses_and_lists_what_sentry_would_refuse(sentry_receiver: SentryReceiver) -> None:
    now = time.time()
    backwards = envelope("transaction", transaction(now, now - 1.0))  # ends before it starts

    assert post_envelope(sentry_receiver.dsn, backwards).status == 400
    assert post_envelope(sentry_receiver.dsn, envelope("event", error_event()), key="wrong").status == 403
    problems = sentry_receiver.take_problems()
    assert len(problems) == 2
    assert "ProcessingErrorInvalidTransaction" in problems[0]
    assert "wrong" in problems[1]
    assert sentry_receiver.envelopes() == []


def test_sentry_receiver_answers_as_told(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.responder = rate_limited("transaction", seconds=30)
    event = error_event(logentry={"formatted": "hello"})

    response = post_envelope(sentry_receiver.dsn, envelope("event", event), key=PUBLIC_KEY)

    assert response.status == 429
    assert response.getheader("X-Sentry-Rate-Limits") == "30:transaction:key"
    assert [e["event_id"] for e in sentry_receiver.events()] == [event["event_id"]]
    assert sentry_receiver.envelopes(accepted_only=True) == []
