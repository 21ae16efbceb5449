"""TEMPORARY minimal OTLP receiver (replaced by the peers branch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.httpserver import RecordingServer
from tests.judges import decode_otlp


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    status: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int


class OtlpReceiver(RecordingServer):
    @property
    def endpoint(self) -> str:
        return self.url + "/v1/traces"

    def spans(self) -> list[Span]:
        out = []
        for request in list(self.requests):
            message = decode_otlp(request.body, request.headers.get("content-encoding", ""))
            for rs in message.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            Span(
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"][s.kind],
                                ["UNSET", "OK", "ERROR"][s.status.code],
                                {a.key: _value(a.value) for a in s.attributes},
                                [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events],
                                resource,
                                ss.scope.name,
                                s.start_time_unix_nano,
                                s.end_time_unix_nano,
                            )
                        )
        return out
