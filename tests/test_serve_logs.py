"""``serve``'s ``POST /v1/logs``: the real OpenTelemetry Python SDK's LoggerProvider and OTLP/HTTP log exporter
(and hand-built OTLP for bad input) → serve on loopback → Sentry errors judged by Relay's normalizer (the
receiver fails the test on any invalid envelope) and stored by a real Bugsink."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.request
from collections import Counter
from typing import Any, Optional

import pytest
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from bridge.receiver.app import ReceiverApp
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink
from tests.httpserver import Reply
from tests.peers.bugsink import Bugsink
from tests.peers.sentry import SentryReceiver
from tests.serve_support import call, running, serving_app

RESOURCE = {"service.name": "shop", "service.version": "3.1.0", "deployment.environment.name": "staging"}


def charge_card(number: str) -> None:
    raise ValueError(f"card {number} declined")


class Service:
    """A service that knows nothing of Sentry: the OpenTelemetry SDK, exporting traces and logs over OTLP."""

    def __init__(self, url: str, resource: Optional[dict[str, Any]] = None) -> None:
        attributes = resource or RESOURCE
        self.tracers = TracerProvider(resource=Resource.create(attributes))
        self.tracers.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        self.logs = LoggerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
        exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
        self.logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        self.tracer = self.tracers.get_tracer("shop.views")
        self.logger = self.logs.get_logger("shop.views")

    def request(self, *, as_record: bool = True, as_span_event: bool = False) -> trace_api.SpanContext:
        """One failing request; its exception reported as a log record (while the span is current, so before
        the span is exported), a span event, or both."""
        attributes = {"http.request.method": "POST", "http.route": "/charge"}
        with self.tracer.start_as_current_span("POST /charge", kind=SpanKind.SERVER, attributes=attributes) as span:
            self.logger.emit(severity_number=SeverityNumber.INFO, body="charging")  # no exception: dropped
            try:
                charge_card("4242")
            except ValueError as exc:
                if as_record:
                    self.logger.emit(severity_number=SeverityNumber.ERROR, event_name="exception", exception=exc)
                if as_span_event:
                    span.record_exception(exc)
            return span.get_span_context()

    def close(self) -> None:
        self.tracers.shutdown()
        self.logs.shutdown()

    def report_later(self, context: trace_api.SpanContext) -> None:
        """The exception as a record in ``context``'s span, emitted after that span was exported."""
        try:
            charge_card("4242")
        except ValueError as exc:
            within = trace_api.set_span_in_context(trace_api.NonRecordingSpan(context))
            self.logger.emit(severity_number=SeverityNumber.ERROR, exception=exc, context=within)


def test_an_exception_log_record_becomes_one_sentry_error_with_frames(sentry_receiver: SentryReceiver) -> None:
    with serving_app(sentry_receiver.dsn) as (url, app):
        service = Service(url)
        context = service.request()
        service.close()
        [error] = sentry_receiver.wait_for_items("event", 1)
        health = app.logs.health()
    assert error["contexts"]["trace"]["trace_id"] == f"{context.trace_id:032x}"
    assert error["contexts"]["trace"]["span_id"] == f"{context.span_id:016x}"
    assert (error["environment"], error["release"], error["level"]) == ("staging", "3.1.0", "error")
    # The record came before its trace's spans: named only if they arrived before the error was built.
    assert error.get("transaction") in (None, "POST /charge")
    [value] = error["exception"]["values"]
    assert (value["type"], value["value"]) == ("ValueError", "card 4242 declined")
    frames = value["stacktrace"]["frames"]
    assert frames[-1]["function"] == "charge_card" and frames[-1]["abs_path"].endswith("test_serve_logs.py")
    assert health["records_without_exception_dropped"] == 1 and health["errors"] == 1
    sentry_receiver.assert_all_valid()


def test_the_transaction_name_when_the_traces_spans_came_first(sentry_receiver: SentryReceiver) -> None:
    with serving_app(sentry_receiver.dsn) as (url, _):
        service = Service(url)
        context = service.request(as_record=False)
        service.report_later(context)
        service.close()
        [error] = sentry_receiver.wait_for_items("event", 1)
    assert error["transaction"] == "POST /charge"
    assert error["contexts"]["trace"]["span_id"] == f"{context.span_id:016x}"
    sentry_receiver.assert_all_valid()


@pytest.mark.parametrize("spans_first", [True, False])
def test_logs_dup_the_same_exception_as_record_and_span_event_is_reported_once(
    sentry_receiver: SentryReceiver, spans_first: bool
) -> None:
    with serving_app(sentry_receiver.dsn) as (url, app):
        service = Service(url)
        if spans_first:  # the span (with its exception event) is exported before the record is emitted
            context = service.request(as_record=False, as_span_event=True)
            service.report_later(context)
        else:
            context = service.request(as_record=True, as_span_event=True)
        service.close()
        sentry_receiver.wait_for_items("transaction", 1)
        errors = sentry_receiver.events()
        health = app.logs.health()
    assert len(errors) == 1, errors
    assert errors[0]["contexts"]["trace"]["span_id"] == f"{context.span_id:016x}"
    assert health["duplicates_left_out"] == 1


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_any(item) for item in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=_any(v)) for k, v in value.items()]))
    return AnyValue(string_value=str(value))


def _request(records: list[LogRecord], resource: Optional[dict[str, Any]] = None) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in (resource or {"service.name": "edge"}).items():
        resource_logs.resource.attributes.add(key=key, value=_any(value))
    resource_logs.scope_logs.add().log_records.extend(records)
    return request


def _record(attributes: dict[str, Any], **fields: Any) -> LogRecord:
    record = LogRecord(time_unix_nano=1_700_000_000_000_000_000, severity_number=17, **fields)
    for key, value in attributes.items():
        record.attributes.add(key=key, value=_any(value))
    return record


def _post(url: str, body: bytes, content_type: str, gzipped: bool = False) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    request = urllib.request.Request(f"{url}/v1/logs", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


GO_STACK = (
    "goroutine 1 [running]:\nmain.charge(...)\n\t/src/shop/main.go:12 +0x1d\n"
    "main.main()\n\t/src/shop/main.go:20 +0x25\n"
)


def test_bad_input_gives_valid_events_or_counted_rejections(sentry_receiver: SentryReceiver) -> None:
    every_kind = {
        "s": "text", "b": True, "i": 7, "d": 1.5, "nan": float("nan"), "raw": b"\x00\xff",
        "list": [1, "two", [3.0]], "map": {"k": {"deep": [True]}},
    }  # fmt: skip
    records = [
        _record({"exception.type": "Boom", "exception.message": "no ids at all"}),
        _record({"exception.type": "Short", "exception.message": "short ids"}, trace_id=b"\x01" * 8, span_id=b"\x02"),
        _record({"exception.type": "Zero"}, trace_id=bytes(16), span_id=bytes(8)),
        _record({}, event_name="exception", body=_any({"error": "a map body", "code": 3})),
        _record({}, event_name="exception", body=_any(b"\x89bytes")),
        _record({"exception.type": "Kinds", **every_kind}, trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8),
        _record({"exception.type": "Opaque", "exception.stacktrace": "%%% nothing a parser knows %%%"}),
        _record({"exception.type": "GoPanic", "exception.message": "oops", "exception.stacktrace": GO_STACK}),
        _record({"plain": "not an exception"}, body=_any("hello")),
    ]
    with serving_app(sentry_receiver.dsn) as (url, app):
        status, body = _post(url, _request(records).SerializeToString(), "application/x-protobuf", gzipped=True)
        events = sentry_receiver.wait_for_items("event", 8)
        health = app.logs.health()
    assert status == 200
    response = ExportLogsServiceResponse()
    response.ParseFromString(body)
    assert response.partial_success.rejected_log_records == 0
    newest = [event["exception"]["values"][-1] for event in events]
    by_type = {value.get("type", ""): event for value, event in zip(newest, events)}
    assert set(by_type) == {"Boom", "Short", "Zero", "", "Kinds", "Opaque", "GoPanic"}  # "": a body, no type
    for event in events:
        trace = event["contexts"]["trace"]
        assert len(trace["trace_id"]) == 32 and int(trace["trace_id"], 16) and len(trace["span_id"]) == 16
    assert by_type["Kinds"]["contexts"]["trace"]["trace_id"] == "0a" * 16
    bodies = [value["value"] for value in newest if "type" not in value]
    assert len(bodies) == 2 and json.loads(bodies[0]) == {"error": "a map body", "code": 3}
    assert bodies[1] == base64.b64encode(b"\x89bytes").decode()
    assert "nothing a parser knows" in by_type["Opaque"]["exception"]["values"][-1]["value"]
    go_frames = by_type["GoPanic"]["exception"]["values"][-1]["stacktrace"]["frames"]
    assert go_frames[-1]["function"] == "main.charge" or go_frames[-1]["function"] == "charge"
    assert health["ids_replaced"] == 2  # short and zero ids (absent ones are not counted)
    assert health["records_without_exception_dropped"] == 1
    sentry_receiver.assert_all_valid()


def test_json_with_bad_hex_ids_and_the_http_contract(sentry_receiver: SentryReceiver) -> None:
    document = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js-shop"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "traceId": "zz" * 16,
                                "spanId": "0102030405060708",
                                "severityNumber": 17,
                                "eventName": "exception",
                                "attributes": [{"key": "exception.type", "value": {"stringValue": "TypeError"}}],
                            },
                            {"traceId": "ab" * 16, "spanId": "cd" * 8, "body": {"stringValue": "just a line"}},
                        ]
                    }
                ],
            }
        ]
    }
    with serving_app(sentry_receiver.dsn) as (url, app):
        status, body = _post(url, json.dumps(document).encode(), "application/json")
        [event] = sentry_receiver.wait_for_items("event", 1)
        assert _post(url, b"{not json", "application/json")[0] == 400
        assert _post(url, b"\x0a\xff\xff", "application/x-protobuf")[0] == 400
        assert _post(url, b"{}", "text/plain")[0] == 415
        app.max_body = 10
        assert _post(url, json.dumps(document).encode(), "application/json")[0] == 413
        health = app.logs.health()
    assert status == 200 and json.loads(body) == {}
    assert event["exception"]["values"][-1]["type"] == "TypeError"
    assert call(app, b"{}", path="/v1/logs", headers={"Content-Type": "application/json"})[0] == 503  # stopped
    assert call(app, b"", method="GET", path="/v1/logs")[0] == 405
    assert health["ids_replaced"] == 1
    sentry_receiver.assert_all_valid()


def test_records_of_a_service_without_a_dsn_are_rejected_and_a_full_queue_answers_429(
    tmp_path: Any, sentry_receiver: SentryReceiver
) -> None:
    routes = tmp_path / "routes.txt"
    routes.write_text(f"shop = {sentry_receiver.dsn}\n")
    sink = SentrySink(Routes.load(str(routes), None), environ={}, root_delay=0.05, queue_size=60)
    app = ReceiverApp(sink)
    record = _record({"exception.type": "Boom"})
    sentry_receiver.responder = lambda request: Reply(200, delay=0.02)  # Sentry takes 20 ms per envelope
    try:
        with running(app) as server:
            status, body = _post(server.url, _request([record]).SerializeToString(), "application/x-protobuf")
            response = ExportLogsServiceResponse()
            response.ParseFromString(body)
            assert status == 200 and response.partial_success.rejected_log_records == 1
            assert "no Sentry DSN for service.name 'edge'" in response.partial_success.error_message
            first, second = (  # 50 errors each, with ids: a retried request must not be taken for a duplicate
                _request(
                    [_record({"exception.type": "Boom"}, trace_id=bytes([n]) * 16, span_id=bytes([k + 1]) * 8)
                     for k in range(50)],
                    {"service.name": "shop"},
                ).SerializeToString()
                for n in (1, 2)
            )  # fmt: skip
            assert _post(server.url, first, "application/x-protobuf")[0] == 200
            status, _ = _post(server.url, second, "application/x-protobuf")  # 50 + 50 > 60 while Sentry is slow
            assert status == 429
            destination = sink.destination("shop")
            assert destination is not None
            assert destination.flush(20)  # type: ignore[attr-defined]  # LegDestination: the queue drains
            assert _post(server.url, second, "application/x-protobuf")[0] == 200
            events = sentry_receiver.wait_for_items("event", 100, timeout=30)
    finally:
        sink.shutdown(5)
    by_trace = Counter(event["contexts"]["trace"]["trace_id"] for event in events)
    assert by_trace == {"01" * 16: 50, "02" * 16: 50}


def test_a_record_error_lands_in_a_real_bugsink_with_its_frames(bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("serve-logs")
    with serving_app(dsn) as (url, _):
        service = Service(url)
        context = service.request()
        service.close()
        [stored] = bugsink.wait_for_events(1, project_id=project_id)
    data = stored["data"]
    assert data["contexts"]["trace"]["trace_id"] == f"{context.trace_id:032x}"
    newest = data["exception"]["values"][-1]
    assert newest["type"] == "ValueError"
    assert newest["stacktrace"]["frames"][-1]["function"] == "charge_card"
