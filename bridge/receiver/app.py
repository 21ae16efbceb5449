"""The receiver as a WSGI application: ``POST /v1/traces`` and ``POST /v1/logs`` (OTLP/HTTP), ``GET /health``.

Status codes, as the OTLP/HTTP specification asks:
- 200 with an ``ExportTraceServiceResponse`` in the request's encoding; ``partial_success`` counts the
  spans that were not taken (unusable ids or timestamps, no DSN for their service) and says why;
- 400 for a body that is not an OTLP trace request (or a gzip/deflate stream that is broken);
- 413 for a body over ``max_body`` bytes, as sent or once decompressed (gzip bombs stop at the limit);
- 415 for a Content-Type other than ``application/x-protobuf`` / ``application/json``, or an unknown
  Content-Encoding (``gzip``, ``deflate`` and ``identity`` are known);
- 429 with ``Retry-After`` when the queue to Sentry is full, 503 with ``Retry-After`` while shutting down;
- 404 for other paths, 405 for other methods, 500 (logged) should the receiver itself fail.
In front of it, ``guard.py`` answers 401 (no valid bearer token) and 429 (a sender over its share of the
queue) before this app sees the request; spans of services the sender's token may not send for are
rejected here, in ``partial_success``.
Every 4xx/5xx body is a ``google.rpc.Status``, encoded as the request was (protobuf by default).

Run it under gunicorn (one worker process, since buffers are per process; threads are fine)::

    gunicorn --workers 1 --threads 8 --bind 127.0.0.1:4318 'bridge.receiver.app:create_app()'
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections import Counter
from collections.abc import Iterable
from typing import Any, Callable, Optional

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bridge.receiver.auth import restrict_resources, restrict_services
from bridge.receiver.decode import Decoded, DecodeError, decode_protobuf
from bridge.receiver.logs import LogIntake, decode_logs
from bridge.receiver.otlpjson import decode_json
from bridge.receiver.sink import Overloaded, Sink

__all__ = ["ReceiverApp", "create_app", "PROTOBUF", "JSON", "DEFAULT_MAX_BODY"]

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
DEFAULT_MAX_BODY = 20 * 1024 * 1024  # the OpenTelemetry Collector's own default for its OTLP receiver
TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"
HEALTH_PATH = "/health"
_CONTENT_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
_GRPC_CODE = {400: 3, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}  # google.rpc.Code
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: Optional[list[tuple[str, str]]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class ReceiverApp:
    def __init__(self, sink: Sink, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.sink = sink
        self.max_body = max_body
        self.statuses: Counter[int] = Counter()  # responses by status, for /health
        self.logs = LogIntake(sink)  # POST /v1/logs (bridge.receiver.logs)
        self._lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        content_type = PROTOBUF
        try:
            if path == TRACES_PATH:
                if method != "POST":
                    raise _Refused(405, "use POST", [("Allow", "POST")])
                content_type = _content_type(environ)
                body = self._export(environ, content_type)
                return self._respond(start_response, 200, content_type, body)
            if path == LOGS_PATH:
                if method != "POST":
                    raise _Refused(405, "use POST", [("Allow", "POST")])
                content_type = _content_type(environ)
                body = self._export_logs(environ, content_type)
                return self._respond(start_response, 200, content_type, body)
            if path == HEALTH_PATH and method in ("GET", "HEAD"):
                return self._health(start_response, method)
            raise _Refused(404, f"nothing at {path[:200]}; OTLP goes to POST {TRACES_PATH} or {LOGS_PATH}")
        except _Refused as refused:
            logger.debug("otel-sentry-bridge serve: %d %s", refused.status, refused.message)
            body = _status_body(refused.status, refused.message, content_type)
            return self._respond(start_response, refused.status, content_type, body, refused.headers)
        except Exception:
            logger.exception("otel-sentry-bridge serve: failed on a request")
            body = _status_body(500, "internal error in otel-sentry-bridge serve", content_type)
            return self._respond(start_response, 500, content_type, body)

    def _export(self, environ: Environ, content_type: str) -> bytes:
        encoding = _content_encoding(environ)
        if self.sink.draining:
            raise _Refused(503, "the receiver is shutting down", [("Retry-After", "1")])
        raw = read_body(environ, self.max_body)
        data = decompress(raw, encoding, self.max_body)
        try:
            decoded: Decoded = decode_protobuf(data) if content_type == PROTOBUF else decode_json(data)
        except DecodeError as exc:
            raise _Refused(400, str(exc)[:1000]) from None
        decoded.spans = restrict_services(environ, decoded.spans, decoded.reject)  # a token's services only
        exceptions = self.logs.note_spans(decoded.spans)  # reported as log records already; transaction names
        try:
            accepted = self.sink.accept(decoded.spans)
        except Overloaded as exc:
            raise _Refused(exc.status, exc.message, [("Retry-After", str(exc.retry_after))]) from None
        self.logs.reported(exceptions)
        for problem, count in accepted.problems.items():
            decoded.reject(problem, count)
        return _export_response(decoded, content_type)

    def _export_logs(self, environ: Environ, content_type: str) -> bytes:
        """``POST /v1/logs``: the same encodings, limits and back-pressure as traces (bridge.receiver.logs)."""
        encoding = _content_encoding(environ)
        if self.sink.draining:
            raise _Refused(503, "the receiver is shutting down", [("Retry-After", "1")])
        data = decompress(read_body(environ, self.max_body), encoding, self.max_body)
        try:
            request, bad_ids = decode_logs(data, content_type == JSON)
            refused = restrict_resources(environ, request.resource_logs, _log_records)  # a token's services only
            accepted = self.logs.accept(request, bad_ids)
        except DecodeError as exc:
            raise _Refused(400, str(exc)[:1000]) from None
        except Overloaded as exc:
            raise _Refused(exc.status, exc.message, [("Retry-After", str(exc.retry_after))]) from None
        for problem, count in refused.items():
            accepted.reject(problem, count)
        return accepted.response(content_type == JSON)

    def _health(self, start_response: StartResponse, method: str) -> Iterable[bytes]:
        report = dict(self.sink.health())
        report["logs"] = self.logs.health()
        with self._lock:
            report["responses"] = {str(status): n for status, n in sorted(self.statuses.items())}
        status = 503 if self.sink.draining else 200
        body = json.dumps(report).encode()
        return self._respond(start_response, status, JSON, b"" if method == "HEAD" else body)

    def _respond(
        self,
        start_response: StartResponse,
        status: int,
        content_type: str,
        body: bytes,
        headers: Optional[list[tuple[str, str]]] = None,
    ) -> Iterable[bytes]:
        with self._lock:
            self.statuses[status] += 1
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])],
        )
        return [body]


def _log_records(resource_logs: Any) -> int:
    return sum(len(scope_logs.log_records) for scope_logs in resource_logs.scope_logs)


def _content_type(environ: Environ) -> str:
    raw = str(environ.get("CONTENT_TYPE") or "")
    kind = _CONTENT_TYPES.get(raw.split(";", 1)[0].strip().lower())
    if kind is None:
        raise _Refused(415, f"unsupported Content-Type {raw[:100]!r}; use {PROTOBUF} or {JSON}")
    return kind


def _content_encoding(environ: Environ) -> str:
    raw = str(environ.get("HTTP_CONTENT_ENCODING") or "").strip().lower()
    if raw in ("", "identity"):
        return ""
    if raw in ("gzip", "x-gzip", "deflate"):
        return "deflate" if raw == "deflate" else "gzip"
    raise _Refused(415, f"unsupported Content-Encoding {raw[:100]!r}; use gzip, deflate or none")


def read_body(environ: Environ, limit: int) -> bytes:
    """The request body, refused (413) beyond ``limit`` bytes before more than ``limit + 1`` are read."""
    stream = environ["wsgi.input"]
    length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
    if length_text:
        try:
            length = int(length_text)
        except ValueError:
            raise _Refused(400, f"bad Content-Length {length_text[:50]!r}") from None
        if length < 0:
            raise _Refused(400, f"bad Content-Length {length_text[:50]!r}")
        if length > limit:
            raise _Refused(413, f"the body ({length} bytes) is over the limit of {limit} bytes")
    else:
        length = limit + 1  # no length given (chunked): read to the end, at most one byte over the limit
    chunks: list[bytes] = []
    total = 0
    try:
        while total < length:
            chunk = stream.read(min(1 << 20, length - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except (OSError, ValueError) as exc:  # a broken chunked body, a timeout, a client gone
        raise _Refused(400, f"the body could not be read ({type(exc).__name__}: {exc})"[:300]) from None
    if total > limit:
        raise _Refused(413, f"the body is over the limit of {limit} bytes")
    if length_text and total < length:
        raise _Refused(400, f"the body ended after {total} of {length} bytes")
    return b"".join(chunks)


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``gzip`` (several members allowed) or ``deflate`` (zlib or raw); 413 past ``limit`` bytes."""
    if not encoding or not data:
        return data
    # deflate is zlib-wrapped by the RFC, raw by some clients: try both
    wbits = [16 + zlib.MAX_WBITS] if encoding == "gzip" else [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    for index, bits in enumerate(wbits):
        try:
            return _inflate(data, bits, limit, several=encoding == "gzip")
        except zlib.error as exc:
            if index == len(wbits) - 1:
                raise _Refused(400, f"the body is not valid {encoding} data ({exc})") from None
    raise AssertionError("unreachable")


def _inflate(data: bytes, wbits: int, limit: int, *, several: bool) -> bytes:
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        stream = zlib.decompressobj(wbits)
        chunk = stream.decompress(rest, limit + 1 - total)
        total += len(chunk)
        if total > limit:
            raise _Refused(413, f"the body is over the limit of {limit} bytes once decompressed")
        out.append(chunk)
        if not stream.eof:
            raise zlib.error("the compressed stream is truncated")
        rest = stream.unused_data
        if rest and not several:
            raise zlib.error("data after the end of the compressed stream")
    return b"".join(out)


def _export_response(decoded: Decoded, content_type: str) -> bytes:
    response = ExportTraceServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = decoded.message()[:4000]
    if content_type == JSON:
        return json_format.MessageToJson(response, indent=None).encode()  # type: ignore[no-any-return]
    return response.SerializeToString()  # type: ignore[no-any-return]


def _status_body(status: int, message: str, content_type: str) -> bytes:
    body = status_pb2.Status(code=_GRPC_CODE.get(status, 2), message=message)
    if content_type == JSON:
        return json_format.MessageToJson(body, indent=None).encode()  # type: ignore[no-any-return]
    return body.SerializeToString()  # type: ignore[no-any-return]


def create_app(**settings: Any) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """The app with its Sentry sink, from keyword ``settings`` over ``OTEL_SENTRY_BRIDGE_*`` variables.

    For gunicorn: ``'bridge.receiver.app:create_app()'`` or ``'...:create_app(routes="routes.txt")'``.
    The sink is flushed and shut down at interpreter exit (gunicorn's worker exits that way on SIGTERM).
    With a bearer token file, health token or per-sender limits set, the app is behind their guard
    (``guard.py``); TLS under gunicorn: ``-c python:bridge.receiver.gunicorn_tls``.
    """
    from bridge.receiver.settings import ServeSettings, build_sink, guarded

    config = ServeSettings.from_environ(**settings)
    sink = build_sink(config, at_exit=True)
    return guarded(ReceiverApp(sink, max_body=config.max_body), config)
