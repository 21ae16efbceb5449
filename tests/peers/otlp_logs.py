"""An OTLP/HTTP logs receiver on loopback: ``POST /v1/logs``, decoded by the official ``opentelemetry-proto``.

Protobuf (gzip/deflate honoured); every request is decoded before it is answered; log records come back as
plain ``LogView`` records. Anything else (another path, an undecodable body) is answered 400/404 and listed
in ``problems``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Optional

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from tests.httpserver import Reply, Request, Responder, decompress
from tests.peers.otlp import _attributes, _value
from tests.peers.receiver import JudgingReceiver

__all__ = ["LogView", "OtlpLogsReceiver", "log_views"]


@dataclass(frozen=True)
class LogView:
    """One received log record: ids in lower-case hex ("" when absent), severity by short name."""

    trace_id: str
    span_id: str
    severity: str  # "ERROR", "WARN", ... ("UNSPECIFIED" when absent)
    severity_text: str
    body: Any
    event_name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    time_unix_nano: int
    request_encoding: str


def log_views(message: ExportLogsServiceRequest, encoding: str = "") -> list[LogView]:
    views = []
    for resource_logs in message.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                views.append(
                    LogView(
                        trace_id=record.trace_id.hex(),
                        span_id=record.span_id.hex(),
                        severity=SeverityNumber.Name(record.severity_number)
                        .removeprefix("SEVERITY_NUMBER_")
                        .rstrip("0123456789"),
                        severity_text=record.severity_text,
                        body=_value(record.body) if record.HasField("body") else None,
                        event_name=record.event_name,
                        attributes=_attributes(record.attributes),
                        resource=resource,
                        scope=scope_logs.scope.name,
                        time_unix_nano=record.time_unix_nano,
                        request_encoding=encoding,
                    )
                )
    return views


def accept(request: Request) -> Reply:
    return Reply(200, {"Content-Type": "application/x-protobuf"}, ExportLogsServiceResponse().SerializeToString())


class OtlpLogsReceiver(JudgingReceiver):
    """``with OtlpLogsReceiver() as receiver:``; point a log exporter at ``receiver.endpoint``."""

    def __init__(
        self, responder: Optional[Responder] = None, port: int = 0, tls: Optional[ssl.SSLContext] = None
    ) -> None:
        self.records: list[LogView] = []
        self.problems: list[str] = []
        super().__init__(accept, responder, port, tls)

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/logs"

    def _receive(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/logs":
            with self._arrived:
                self.problems.append(f"{request.method} {request.path}: not an OTLP logs export")
            return Reply(404)
        encoding = request.headers.get("content-encoding", "")
        try:
            message = ExportLogsServiceRequest()
            message.ParseFromString(decompress(request.body, encoding) if encoding else request.body)
            records = log_views(message, encoding)
        except Exception as exc:
            with self._arrived:
                self.problems.append(f"undecodable logs export: {exc!r}")
            return Reply(400)
        with self._arrived:
            self.records.extend(records)
            self._arrived.notify_all()
        return self._answer(request)

    def wait_for_records(self, count: int, timeout: float = 10.0) -> list[LogView]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.records) >= count, timeout):
                raise AssertionError(f"expected {count} log records, got {len(self.records)}: {self.problems}")
            return list(self.records)
