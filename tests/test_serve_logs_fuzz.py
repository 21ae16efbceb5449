"""Generated OTLP log requests against ``serve``'s ``/v1/logs``: every request is answered (200 with a counted
``partial_success``, or 400 for a body that does not decode), never 500, and every Sentry event it produces
passes Relay's normalizer (the Sentry receiver judges each envelope)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from bridge.receiver.app import ReceiverApp
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink
from tests.peers.sentry import SentryReceiver
from tests.serve_support import call
from tests.stacktrace_samples import sample

KEYS = ["exception.type", "exception.message", "exception.stacktrace", "http.route", "user.id", "sentry.tag.x", "k"]
STACKS = [sample(name) for name in ("dotnet_inner.txt", "go_panic.txt", "ruby34_cause.txt")]

scalars = st.one_of(
    st.text(max_size=40).map(lambda text: AnyValue(string_value=text)),
    st.booleans().map(lambda flag: AnyValue(bool_value=flag)),
    st.integers(-(2**63), 2**63 - 1).map(lambda number: AnyValue(int_value=number)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda number: AnyValue(double_value=number)),
    st.binary(max_size=20).map(lambda raw: AnyValue(bytes_value=raw)),
    st.just(AnyValue()),
)
any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: AnyValue(array_value=ArrayValue(values=items))),
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=3).map(
            lambda pairs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))
        ),
    ),
    max_leaves=6,
)
stack_texts = st.one_of(st.sampled_from(STACKS), st.text(max_size=200))


@st.composite
def records(draw: Any) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(st.sampled_from([0, 1, 1_700_000_000_000_000_000, 2**64 - 1])),
        severity_number=draw(st.integers(0, 30)),
        trace_id=draw(st.sampled_from([b"", bytes(16), b"\x01" * 16, b"\x02" * 8])),
        span_id=draw(st.sampled_from([b"", bytes(8), b"\x03" * 8, b"\x04"])),
        event_name=draw(st.sampled_from(["", "exception", "other"])),
    )
    if draw(st.booleans()):
        record.body.CopyFrom(draw(any_values))
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        if key == "exception.stacktrace" and draw(st.booleans()):
            value = AnyValue(string_value=draw(stack_texts))
        else:
            value = draw(any_values)
        record.attributes.add(key=key, value=value)
    return record


@st.composite
def requests(draw: Any) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        resource_logs = request.resource_logs.add()
        language = draw(st.sampled_from(["", "python", "java", "nodejs", "go", "dotnet", "ruby", "webjs"]))
        resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value="fuzz"))
        if language:
            resource_logs.resource.attributes.add(key="telemetry.sdk.language", value=AnyValue(string_value=language))
        resource_logs.scope_logs.add().log_records.extend(draw(st.lists(records(), max_size=4)))
    return request


def test_generated_log_requests_give_valid_events_or_counted_rejections(sentry_receiver: SentryReceiver) -> None:
    sink = SentrySink(Routes.load(None, sentry_receiver.dsn), environ={}, root_delay=0.05)
    app = ReceiverApp(sink)
    statuses: list[int] = []

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(request=requests(), garbage=st.binary(max_size=30), broken=st.booleans())
    def post(request: ExportLogsServiceRequest, garbage: bytes, broken: bool) -> None:
        body = request.SerializeToString() + (garbage if broken else b"")
        status, _, _ = call(app, body, path="/v1/logs", headers={"Content-Type": "application/x-protobuf"})
        assert status in (200, 400), status
        statuses.append(status)

    try:
        post()
    finally:
        sink.shutdown(10)
    assert 200 in statuses
    assert app.statuses[500] == 0
    assert app.logs.health().get("errors", 0) == len(sentry_receiver.events())
    sentry_receiver.assert_all_valid()


def test_a_map_as_exception_message_beside_an_unparsed_stack_still_gives_its_event(
    sentry_receiver: SentryReceiver,
) -> None:
    """Found by the generator above (seed 1): the message, a map, was sliced as text on the worker."""
    sink = SentrySink(Routes.load(None, sentry_receiver.dsn), environ={}, root_delay=0.05)
    app = ReceiverApp(sink)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value="fuzz"))
    record = resource_logs.scope_logs.add().log_records.add(severity_number=17)
    message = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(int_value=1))]))
    record.attributes.add(key="exception.message", value=message)
    record.attributes.add(key="exception.stacktrace", value=AnyValue(string_value="no parser knows this"))
    try:
        status, _, _ = call(
            app, request.SerializeToString(), path="/v1/logs", headers={"Content-Type": "application/x-protobuf"}
        )
    finally:
        sink.shutdown(10)
    assert status == 200
    [event] = sentry_receiver.events()
    assert "no parser knows this" in event["exception"]["values"][-1]["value"]
    assert "k" in event["logentry"]["formatted"]
    sentry_receiver.assert_all_valid()
