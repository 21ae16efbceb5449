"""``serve`` end to end: real OTLP exporters (OpenTelemetry Python, and JS from npm) → serve on loopback →
the Sentry leg → a Sentry receiver that judges every envelope with sentry-sdk's parser and Relay's normalizer
(the fixture fails the test on any invalid envelope), a real Bugsink, and serve under a real gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from bridge.receiver.app import ReceiverApp
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink
from bridge.sentry.dsn import Dsn
from tests.httpserver import Reply, unused_port
from tests.peers.bugsink import Bugsink
from tests.peers.sentry import SentryReceiver
from tests.serve_support import encode, finished_spans, node_export, running, serving

ROOT = Path(__file__).resolve().parent.parent

JAVA_STACK = """\
java.lang.IllegalStateException: payment gateway refused the charge
\tat com.example.shop.PaymentService.charge(PaymentService.java:42)
\tat com.example.shop.CheckoutController.checkout(CheckoutController.java:17)
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)
Caused by: java.net.SocketTimeoutException: Read timed out
\tat java.base/java.net.SocketInputStream.read(SocketInputStream.java:168)
\tat com.example.shop.GatewayClient.post(GatewayClient.java:88)
\t... 2 more
"""


def export(url: str, record: Callable[[trace_api.Tracer], None], resource: dict[str, Any]) -> None:
    """Spans of ``record`` exported by the real OTLPSpanExporter (protobuf, gzip), one request per span."""
    provider = TracerProvider(resource=Resource.create(resource))
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip, timeout=10)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    record(provider.get_tracer("shop.views", "2.0"))
    provider.shutdown()


def lookup_order(order_id: str) -> dict[str, str]:
    orders: dict[str, dict[str, str]] = {}
    return orders[order_id]


def failing_request(tracer: trace_api.Tracer) -> None:
    attributes = {"http.request.method": "GET", "http.route": "/orders/{id}", "url.path": "/orders/7"}
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER, attributes=attributes) as root:
        with tracer.start_as_current_span(
            "SELECT orders", kind=SpanKind.CLIENT, attributes={"db.system.name": "sqlite"}
        ):
            pass
        try:
            lookup_order("7")
        except KeyError as exc:
            root.record_exception(exc)
            root.set_status(trace_api.Status(StatusCode.ERROR))
            root.set_attribute("http.response.status_code", 500)


def test_python_exporter_to_serve_gives_a_transaction_and_a_linked_error(sentry_receiver: SentryReceiver) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}) as url:
        export(url, failing_request, {"service.name": "shop", "service.version": "1.4.2"})
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
        [error] = sentry_receiver.wait_for_items("event", 1)
    assert transaction["transaction"] == "GET /orders/{id}"
    assert transaction["transaction_info"] == {"source": "route"}
    assert [span["description"] for span in transaction["spans"]] == ["SELECT orders"]
    assert transaction["release"] == error["release"] == "1.4.2"
    trace = transaction["contexts"]["trace"]
    assert error["contexts"]["trace"]["trace_id"] == trace["trace_id"]
    assert error["contexts"]["trace"]["span_id"] == trace["span_id"]
    assert error["transaction"] == "GET /orders/{id}"
    [value] = error["exception"]["values"]
    assert (value["type"], value["value"]) == ("KeyError", "'7'")


def test_python_stack_trace_text_becomes_frames(sentry_receiver: SentryReceiver) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}) as url:
        export(url, failing_request, {"service.name": "shop"})
        [error] = sentry_receiver.wait_for_items("event", 1)
    frames = error["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "lookup_order"
    assert frames[-1]["lineno"] > 0 and frames[-1]["abs_path"].endswith("test_serve_e2e.py")


def java_request(tracer: trace_api.Tracer) -> None:
    attributes = {"http.request.method": "POST", "http.route": "/checkout"}
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=attributes) as root:
        root.add_event(
            "exception",
            {
                "exception.type": "java.lang.IllegalStateException",
                "exception.message": "payment gateway refused the charge",
                "exception.stacktrace": JAVA_STACK,
                "exception.escaped": True,
            },
        )
        root.set_status(trace_api.Status(StatusCode.ERROR))


def test_a_java_service_error(sentry_receiver: SentryReceiver) -> None:
    resource = {"service.name": "payments", "telemetry.sdk.language": "java"}
    with serving({"SENTRY_DSN": sentry_receiver.dsn}) as url:
        export(url, java_request, resource)
        [error] = sentry_receiver.wait_for_items("event", 1)
    assert error["platform"] == "java"
    newest = error["exception"]["values"][-1]
    assert (newest.get("module"), newest["type"]) == ("java.lang", "IllegalStateException")
    cause = error["exception"]["values"][0]
    assert (cause["module"], cause["type"], cause["value"]) == ("java.net", "SocketTimeoutException", "Read timed out")
    frames = newest["stacktrace"]["frames"]  # oldest first
    assert [frame["function"] for frame in frames] == [
        "DirectMethodHandleAccessor.invoke",
        "CheckoutController.checkout",
        "PaymentService.charge",
    ]
    assert (frames[-1]["module"], frames[-1]["lineno"]) == ("com.example.shop.PaymentService", 42)


def test_a_trace_split_over_two_requests_is_one_transaction(sentry_receiver: SentryReceiver) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}) as url:
        spans = finished_spans(failing_request, {"service.name": "shop"})
        children = [span for span in spans if span.parent is not None]
        roots = [span for span in spans if span.parent is None]
        for batch in (children, roots):  # the child in one export request, its root in a later one
            exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip)
            assert exporter.export(batch).name == "SUCCESS"
            exporter.shutdown()
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
    assert [span["description"] for span in transaction["spans"]] == ["SELECT orders"]
    assert len(sentry_receiver.transactions()) == 1  # also after the shutdown drained every buffer


def test_a_root_served_before_its_child_still_gathers_it(sentry_receiver: SentryReceiver) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}, root_delay="60") as url:
        spans = finished_spans(failing_request, {"service.name": "shop"})
        for batch in ([s for s in spans if s.parent is None], [s for s in spans if s.parent is not None]):
            exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
            assert exporter.export(batch).name == "SUCCESS"
            exporter.shutdown()
        assert sentry_receiver.transactions() == []  # the root waits for late children
    [transaction] = sentry_receiver.wait_for_items("transaction", 1)
    assert [span["description"] for span in transaction["spans"]] == ["SELECT orders"]


def test_routes_send_each_service_to_its_dsn(tmp_path: Path, sentry_receiver: SentryReceiver) -> None:
    with SentryReceiver() as other:
        routes = tmp_path / "routes.txt"
        routes.write_text(f"checkout = {other.dsn}\nlegacy =\n")
        with serving({"SENTRY_DSN": sentry_receiver.dsn}, routes=str(routes)) as url:
            export(url, failing_request, {"service.name": "checkout"})
            export(url, failing_request, {"service.name": "shop"})
            body = encode(finished_spans(failing_request, {"service.name": "legacy"})).SerializeToString()
            host, port = url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            answer = connection.getresponse()
            response = ExportTraceServiceResponse()
            response.ParseFromString(answer.read())
            connection.close()
            other.wait_for_items("transaction", 1)
            sentry_receiver.wait_for_items("transaction", 1)
        other.assert_all_valid()
    assert {t["tags"]["service.name"] for t in other.transactions()} == {"checkout"}
    assert {t["tags"]["service.name"] for t in sentry_receiver.transactions()} == {"shop"}
    assert answer.status == 200 and response.partial_success.rejected_spans == 2
    assert "no Sentry DSN for service.name 'legacy'" in response.partial_success.error_message


def test_a_full_queue_answers_429_with_retry_after(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.responder = lambda request: Reply(hang=True)  # Sentry takes the first envelope, never answers
    sink = SentrySink(Routes({}, Dsn.parse(sentry_receiver.dsn)), queue_size=2, root_delay=0)
    statuses: list[tuple[int, Optional[str]]] = []
    with running(ReceiverApp(sink)) as server:
        host, port = server.server_address[:2]
        for _ in range(6):
            body = encode(finished_spans(failing_request)).SerializeToString()
            connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            answer = connection.getresponse()
            answer.read()
            statuses.append((answer.status, answer.getheader("Retry-After")))
            connection.close()
            if answer.status != 200:
                break
    sink.shutdown(0.5)
    assert statuses[-1] == (429, "2"), statuses
    assert all(status == 200 for status, _ in statuses[:-1])


@pytest.mark.parametrize("fmt", ["proto", "json"])
def test_opentelemetry_js_to_serve(sentry_receiver: SentryReceiver, fmt: str) -> None:
    # JS exports each span as it ends without waiting for the previous export: the root's request may
    # be served before its child's. The root waits (here until serve stops) and still gathers the child.
    with serving({"SENTRY_DSN": sentry_receiver.dsn}, root_delay="60") as url:
        summary = node_export(f"{url}/v1/traces", fmt, "node-shop")
    [transaction] = sentry_receiver.wait_for_items("transaction", 1)
    [error] = sentry_receiver.wait_for_items("event", 1)
    assert transaction["contexts"]["trace"]["trace_id"] == summary["trace_id"] == error["contexts"]["trace"]["trace_id"]
    assert transaction["transaction"] == "GET /checkout"
    assert [span["span_id"] for span in transaction["spans"]] == [summary["child_span_id"]]
    assert transaction["environment"] == error["environment"] == "node-test"
    assert error["platform"] == "node"
    newest = error["exception"]["values"][-1]
    assert (newest["type"], newest["value"]) == ("TypeError", "cannot charge 42: card declined")
    assert newest["stacktrace"]["frames"][-1]["function"] == "chargeCard"


def test_errors_land_in_a_real_bugsink(bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("serve-e2e")
    with serving({"SENTRY_DSN": dsn}) as url:
        spans = finished_spans(failing_request, {"service.name": "shop"})
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip)
        assert exporter.export(spans).name == "SUCCESS"
        exporter.shutdown()
        [stored] = bugsink.wait_for_events(1, project_id=project_id)
    data = stored["data"]
    root = next(span for span in spans if span.parent is None)
    assert root.context is not None
    assert data["contexts"]["trace"]["trace_id"] == f"{root.context.trace_id:032x}"
    assert data["exception"]["values"][-1]["type"] == "KeyError"
    assert data["transaction"] == "GET /orders/{id}"


def test_under_gunicorn_sigterm_flushes_what_is_buffered(sentry_receiver: SentryReceiver) -> None:
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env["SENTRY_DSN"] = sentry_receiver.dsn
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--no-control-socket",
        "--workers",
        "1",
        "--threads",
        "4",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "20",
        "bridge.receiver.app:create_app()",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "Booting worker" in line:
                break
        spans = finished_spans(failing_request, {"service.name": "shop"})
        children = [span for span in spans if span.parent is not None]  # no root: they wait in the buffer
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=Compression.Gzip)
        assert exporter.export(children).name == "SUCCESS"
        exporter.shutdown()
        assert sentry_receiver.transactions() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    [orphan] = sentry_receiver.wait_for_items("transaction", 1, timeout=1)  # sent before gunicorn exited
    assert orphan["transaction"] == "SELECT orders"


def test_the_gauge_counts_envelopes_not_yet_built_and_returns_to_zero(sentry_receiver: SentryReceiver) -> None:
    from bridge.receiver.legs import GaugedTransport
    from bridge.sentry.envelope import Envelope

    release = threading.Event()
    transport = GaugedTransport(Dsn.parse(sentry_receiver.dsn), queue_size=3, client="test/1")

    def build(number: int) -> Callable[[], Envelope]:
        def run() -> Envelope:
            release.wait(10)  # the worker holds the first one until the test looked at the gauge
            event = {"event_id": f"{number:032x}", "level": "error", "platform": "python", "message": "x"}
            return Envelope.for_event(event)

        return run

    accepted = [transport.submit("error", build(n)) for n in range(5)]
    assert accepted.count(True) in (3, 4)  # the queue holds 3 (and the worker may have taken one already)
    assert transport.pending == accepted.count(True)  # refused ones are not counted
    release.set()
    assert transport.flush(10)
    assert transport.pending == 0
    transport.shutdown(1)


def child_error_request(tracer: trace_api.Tracer) -> None:
    attributes = {"http.request.method": "GET", "http.route": "/pay"}
    with tracer.start_as_current_span("GET /pay", kind=SpanKind.SERVER, attributes=attributes):
        with tracer.start_as_current_span("charge") as child:
            try:
                lookup_order("9")
            except KeyError as exc:
                child.record_exception(exc)


def test_each_service_keeps_its_environment_and_release_in_events_and_dsc(sentry_receiver: SentryReceiver) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}) as url:
        staging = {"service.name": "pay", "deployment.environment.name": "staging", "service.version": "2.0"}
        export(url, child_error_request, staging)
        export(url, child_error_request, {"service.name": "shop"})
        sentry_receiver.wait_for_items("transaction", 2)
        sentry_receiver.wait_for_items("event", 2)
    by_service: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for received in sentry_receiver.received:
        header = json.loads(received.request.data.partition(b"\n")[0])
        for _, payload in received.items:
            by_service.setdefault(payload["tags"]["service.name"], []).append((header["trace"], payload))
    for service, environment, release in (("pay", "staging", "2.0"), ("shop", "production", None)):
        assert len(by_service[service]) == 2  # its transaction and its error
        for dsc, payload in by_service[service]:
            assert payload["environment"] == dsc["environment"] == environment
            assert payload.get("release") == dsc.get("release") == release
            assert dsc["transaction"] == "GET /pay"  # the error of a child span too: its root names it
