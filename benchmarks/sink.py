"""A fast counting sink for both channels, in its own process (so its CPU is never counted as the app's).

``python -m benchmarks.sink`` prints ``{"port": N}`` on its first stdout line, then serves on 127.0.0.1:N
(HTTP/1.1, kept-alive connections, one asyncio loop) until SIGTERM or until its stdin closes:

- ``POST /v1/traces``: an OTLP/HTTP protobuf export, decompressed and decoded with opentelemetry-proto;
  its spans are counted. Answered 200 with an empty ``ExportTraceServiceResponse``.
- ``POST /v1/logs``: the same for OTLP log records (``otlp_logs``).
- ``POST /api/<project>/envelope/``: a Sentry envelope, decompressed and parsed item by item (headers
  decoded, payloads framed by their ``length``; client reports decoded); ``transaction`` and ``event``
  items are counted, ``client_report`` items are summed by ``reason:category``. Answered 200, never
  with a rate limit.
- ``GET /counts``: the counts as JSON; ``POST /reset``: zero them (answers the counts before the reset).

What cannot be decoded is counted under ``problems`` (and answered 400), never silently dropped.
The reply is written after counting, so a client whose flush returned has been counted.
"""
from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["Counts", "SinkProcess", "decode_envelope", "count_otlp_logs", "count_otlp_spans"]

_MAX_HEAD = 64 * 1024


def _decompress(body: bytes, encoding: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == b"identity":
        return body
    if encoding == b"gzip":
        return gzip.decompress(body)
    if encoding == b"deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    if encoding == b"br":
        import brotli  # only if a sender uses it

        return bytes(brotli.decompress(body))
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


def count_otlp_spans(data: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def count_otlp_logs(data: bytes) -> int:
    request = ExportLogsServiceRequest()
    request.ParseFromString(data)
    return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)


def decode_envelope(data: bytes, payloads: Optional[frozenset[str]] = None) -> list[tuple[str, Any]]:
    """``[(item_type, decoded_payload), ...]``; raises ValueError on a malformed envelope.

    ``payloads``: the item types whose payload is decoded (None: every one); the others are framed by
    their length and given as None. The counting sink decodes client reports only: a backend stands in
    here for one on another machine, and decoding each event's JSON cost it ~60 us per envelope, enough
    to make it the bottleneck of a saturated run on two shared cores (the tests judge every payload)."""
    header_line, _, rest = data.partition(b"\n")
    json.loads(header_line)
    items: list[tuple[str, Any]] = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_header_line)
        length = item_header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            if len(rest) < length:
                raise ValueError(f"item shorter than its length: {item_header}")
            payload, rest = rest[:length], rest[length + 1 :]
        kind = str(item_header.get("type"))
        wanted = payloads is None or kind in payloads
        items.append((kind, json.loads(payload) if wanted and payload.strip() else None))
    return items


_DECODED = frozenset({"client_report"})


class Counts:
    """What the sink received since the last reset."""

    def __init__(self) -> None:
        self.otlp_requests = 0
        self.otlp_spans = 0
        self.otlp_logs = 0
        self.sentry_envelopes = 0
        self.sentry_transactions = 0
        self.sentry_errors = 0
        self.sentry_other: Counter[str] = Counter()
        self.client_reports: Counter[str] = Counter()  # "reason:category" -> quantity
        self.problems = 0
        self.last_problem = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "otlp_requests": self.otlp_requests,
            "otlp_spans": self.otlp_spans,
            "otlp_logs": self.otlp_logs,
            "sentry_envelopes": self.sentry_envelopes,
            "sentry_transactions": self.sentry_transactions,
            "sentry_errors": self.sentry_errors,
            "sentry_other": dict(self.sentry_other),
            "client_reports": dict(self.client_reports),
            "problems": self.problems,
            "last_problem": self.last_problem,
        }

    def otlp(self, data: bytes) -> None:
        self.otlp_spans += count_otlp_spans(data)
        self.otlp_requests += 1

    def logs(self, data: bytes) -> None:
        self.otlp_logs += count_otlp_logs(data)

    def envelope(self, data: bytes) -> None:
        items = decode_envelope(data, _DECODED)
        self.sentry_envelopes += 1
        for kind, payload in items:
            if kind == "transaction":
                self.sentry_transactions += 1
            elif kind == "event":
                self.sentry_errors += 1
            elif kind == "client_report":
                for entry in (payload or {}).get("discarded_events", ()):
                    key = f"{entry.get('reason')}:{entry.get('category')}"
                    self.client_reports[key] += int(entry.get("quantity", 0))
            else:
                self.sentry_other[kind] += 1

    def problem(self, text: str) -> None:
        self.problems += 1
        self.last_problem = text[:300]


_OTLP_OK = (200, b"application/x-protobuf", b"")  # an empty ExportTraceServiceResponse
_SENTRY_OK = (200, b"application/json", b"{}")
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


class Sink:
    def __init__(self) -> None:
        self.counts = Counts()

    def answer(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes, bytes]:
        path = path.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/traces":
            return self._decode(self.counts.otlp, body, headers, _OTLP_OK)
        if method == b"POST" and path == b"/v1/logs":  # empty ExportLogsServiceResponse, same bytes
            return self._decode(self.counts.logs, body, headers, _OTLP_OK)
        if method == b"POST" and path.startswith(b"/api/") and path.endswith(b"/envelope/"):
            return self._decode(self.counts.envelope, body, headers, _SENTRY_OK)
        if method == b"GET" and path == b"/counts":
            return 200, b"application/json", json.dumps(self.counts.as_dict()).encode()
        if method == b"POST" and path == b"/reset":
            before, self.counts = self.counts, Counts()
            return 200, b"application/json", json.dumps(before.as_dict()).encode()
        self.counts.problem(f"{method!r} {path!r}: unknown route")
        return 404, b"text/plain", b"not found"

    def _decode(
        self, count: Any, body: bytes, headers: dict[bytes, bytes], ok: tuple[int, bytes, bytes]
    ) -> tuple[int, bytes, bytes]:
        try:
            count(_decompress(body, headers.get(b"content-encoding", b"")))
        except Exception as exc:  # the sender's fault; counted, and answered as a backend would
            self.counts.problem(repr(exc))
            return 400, b"text/plain", repr(exc).encode()
        return ok

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, version = request_line.split(b" ", 2)
                headers: dict[bytes, bytes] = {}
                for line in lines:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                    body = await _read_chunked(reader)
                else:
                    length = int(headers.get(b"content-length", b"0"))
                    body = await reader.readexactly(length) if length else b""
                status, content_type, payload = self.answer(method, target, headers, body)
                close = headers.get(b"connection", b"").lower() == b"close" or version == b"HTTP/1.0"
                head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
                    status,
                    _REASONS.get(status, b"X"),
                    content_type,
                    len(payload),
                    b"Connection: close\r\n" if close else b"",
                )
                writer.write(head + payload)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        except asyncio.CancelledError:  # the sink is stopping; kept-alive connections just end
            return
        finally:
            writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the empty line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _main(port: int) -> None:
    sink = Sink()
    server = await asyncio.start_server(sink.serve_connection, "127.0.0.1", port, limit=_MAX_HEAD, backlog=256)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound}), flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def finish() -> None:
        if not stop.done():
            stop.set_result(None)

    def stdin_readable() -> None:
        if not os.read(sys.stdin.fileno(), 4096):  # the parent holds our stdin: when it goes (even killed), so do we
            finish()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish)
    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    async with server:
        await stop


class SinkProcess:
    """The sink in a child process: ``with SinkProcess() as sink: sink.reset(); ...; sink.counts()``."""

    def __init__(self, python: str = sys.executable, start_timeout: float = 20.0) -> None:
        self._python = python
        self._start_timeout = start_timeout
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.port = 0

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    @property
    def logs_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def start(self) -> SinkProcess:
        self._proc = subprocess.Popen(
            [self._python, "-m", "benchmarks.sink"],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self._start_timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the sink did not start within {self._start_timeout}s")
        self.port = int(json.loads(line)["port"])
        return self

    def _call(self, method: str, path: str) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            data: dict[str, Any] = json.loads(response.read())
            return data
        finally:
            connection.close()

    def counts(self) -> dict[str, Any]:
        return self._call("GET", "/counts")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/reset")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_main(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
