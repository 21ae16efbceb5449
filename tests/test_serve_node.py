"""OpenTelemetry JS (from npm) exports to ``serve``: protobuf with gzip (chunked) and OTLP JSON (hex ids)."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind

from bridge.receiver.app import ReceiverApp
from tests.serve_support import RecordingSink, node_export, running


@pytest.mark.parametrize("fmt", ["proto", "json"])
def test_opentelemetry_js_exports_reach_serve_intact(fmt: str) -> None:
    sink = RecordingSink()
    with running(ReceiverApp(sink)) as server:
        summary = node_export(f"{server.url}/v1/traces", fmt, "node-shop")
    assert summary["result"]["code"] == 0, summary  # ExportResultCode.SUCCESS
    spans = {span.name: span for span in sink.spans}
    assert set(spans) == {"GET /checkout", "charge"}
    root, child = spans["GET /checkout"], spans["charge"]
    assert root.context is not None and child.context is not None and child.parent is not None
    assert f"{root.context.trace_id:032x}" == summary["trace_id"] == f"{child.context.trace_id:032x}"
    assert f"{root.context.span_id:016x}" == summary["root_span_id"]
    assert f"{child.context.span_id:016x}" == summary["child_span_id"]
    assert child.parent.span_id == root.context.span_id and not child.parent.is_remote
    assert root.parent is None and root.kind == SpanKind.SERVER
    (event,) = child.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "TypeError"
    assert event.attributes["exception.stacktrace"] == summary["stack"]
    assert root.resource.attributes["service.name"] == "node-shop"
    assert root.resource.attributes["telemetry.sdk.language"] == "nodejs"
