"""A real HTTP/1.1 server on loopback that records what it receives and answers as told.

It is the base of every test receiver (OTLP, Sentry) and of every fault a real backend cannot produce
on demand (refused, hanging, slow, 429, 413, 500, garbage). Waiting is done on a condition variable,
never by sleeping: ``wait_for(n)`` returns as soon as ``n`` requests have arrived.
"""
from __future__ import annotations

import gzip
import socket
import ssl
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = ["Request", "Reply", "RecordingServer", "unused_port", "decompress"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes  # as received
    data: bytes  # after Content-Encoding was undone


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before answering (released early when the server stops)
    hang: bool = False  # accept the request and never answer (until the server stops)
    close: bool = False  # close the connection after answering, without announcing it (idle keep-alive timeout)
    raw: Optional[bytes] = None  # send these bytes instead of a response built from the fields above


Responder = Callable[[Request], Reply]


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def unused_port() -> int:
    """A loopback port with nothing listening on it (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: with Nagle's algorithm the body waits for the client's delayed
    # ACK of the head (40 ms on Linux), which made every answer with a body take 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet in tests
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            data = decompress(body, headers.get("content-encoding", ""))
        except Exception:
            data = body
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path, parse_qs(parts.query), headers, body, data)
        owner = self.server.owner
        reply = owner.responder(request)
        owner._record(request)
        if reply.hang:
            owner._stopping.wait()
            self.close_connection = True
            return
        if reply.delay and owner._stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body:
            self.wfile.write(reply.body)
        if reply.close:
            self.wfile.flush()
            self.close_connection = True

    do_POST = do_GET = do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: RecordingServer

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.owner._accepted(request)
        super().process_request(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class RecordingServer:
    """Start with ``with RecordingServer() as server:``; ``server.url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        responder: Optional[Responder] = None,
        port: int = 0,
        host: str = "127.0.0.1",
        tls: Optional[ssl.SSLContext] = None,  # a server-side context: serve https
    ) -> None:
        self.responder: Responder = responder or (lambda request: Reply())
        self.requests: list[Request] = []
        self.connections = 0  # connections accepted so far
        self._open: list[socket.socket] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, port), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="recording-server", daemon=True
        )

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._cond:  # a stopped server must not keep answering on kept-alive connections
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(5)

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accepted(self, sock: socket.socket) -> None:
        with self._cond:
            self.connections += 1
            self._open.append(sock)

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self.requests.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until at least ``count`` requests arrived; raise AssertionError on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.requests) >= count, timeout)
            if not ok:
                raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self.requests)}")
            return list(self.requests)
