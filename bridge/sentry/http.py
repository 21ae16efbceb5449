"""A minimal HTTP/1.1 keep-alive client for POSTing envelopes, and the ``Sender`` seam the transport uses.

Why not ``http.client`` / urllib3 / requests: CPU per POST is what the transport costs the host app, and a
plain socket with one ``sendall`` per request and one ``recv`` per response is several times cheaper
(see ``benchmarks/transport_cpu.py``). This client does only what sending envelopes needs:

- one connection, reused; ``TCP_NODELAY``; TLS through ``ssl`` for https; IPv6 literal hosts;
- responses framed by ``Content-Length``, ``chunked`` or connection close (bodies are read and discarded,
  the first bytes kept for debug logs); interim 1xx responses skipped; ``Connection: close`` honoured;
- a connection the server closed while idle is replaced transparently, once: before reusing a connection
  idle for a while it is probed without blocking, and a reused connection that ends before the first byte
  of the answer is retried once on a fresh connection;
- connect and every read and write bounded by ``timeout``, and the whole exchange by a deadline.

Every failure is an ``OSError`` (``TimeoutError``, ``ConnectionError``, ``ssl.SSLError``, ``ProtocolError``)
and leaves the client ready for the next ``send`` on a new connection.
"""
from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Protocol
from urllib.parse import urlsplit

__all__ = ["Response", "Sender", "HttpClient", "ProtocolError"]

_MAX_HEAD = 64 * 1024
_KEPT_BODY = 512  # bytes of a response body kept for debug logs
_PROBE_AFTER = 1.0  # seconds of idleness after which a kept-alive connection is probed before reuse


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    body: bytes = b""  # at most the first 512 bytes, for logs


class Sender(Protocol):
    """Sends one request body to a fixed endpoint. Raises ``OSError`` when no answer came back."""

    def send(self, body: bytes, headers: Mapping[str, str]) -> Response: ...

    def close(self) -> None:
        """Drop any open connection; the next ``send`` opens a new one. Also called in a fork() child,
        so it must not shut down a connection the parent still uses."""


class ProtocolError(OSError):
    """The server answered with something that is not HTTP/1.x."""


class _Stale(Exception):
    """A reused connection ended before any byte of the answer: the server had closed it while idle."""


class HttpClient:
    """POSTs to one URL over one kept-alive connection. Not thread-safe: one worker thread owns it."""

    def __init__(self, url: str, *, timeout: float = 5.0, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host: str = parts.hostname
        self.port: int = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.tls = parts.scheme == "https"
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._host_header = parts.netloc.rpartition("@")[2]
        self.probe_after = _PROBE_AFTER  # idle seconds after which a connection is probed before reuse
        self._sock: Optional[socket.socket] = None
        self._idle_since = 0.0
        self._head_for: dict[str, str] = {}
        self._head = b""
        self.connections = 0  # connections opened so far (for tests and benchmarks)

    # -- public ---------------------------------------------------------------------------------
    def send(self, body: bytes, headers: Mapping[str, str]) -> Response:
        if headers != self._head_for:
            self._head = self._build_head(headers)
            self._head_for = dict(headers)
        request = self._head + b"%d\r\n\r\n" % len(body) + body
        sock = self._sock
        if sock is not None and time.monotonic() - self._idle_since >= self.probe_after and not self._alive(sock):
            self.close()
        try:
            return self._exchange(request)
        except _Stale:
            self.close()
        try:
            return self._exchange(request)
        except _Stale:
            self.close()
            raise ConnectionResetError("connection closed before the response") from None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- internals ------------------------------------------------------------------------------
    def _build_head(self, headers: Mapping[str, str]) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1"]
        names = {name.lower() for name in headers}
        if "host" not in names:
            lines.append(f"Host: {self._host_header}")
        for name, value in headers.items():
            if name.lower() == "content-length":
                continue
            if any(c in name + value for c in "\r\n"):
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}")
        lines.append("Content-Length: ")
        return "\r\n".join(lines).encode("latin-1")

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                context = self._ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.connections += 1
        return sock

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        """Without blocking: False if the idle connection is readable, i.e. the peer closed it (or sent
        something unasked, like a 408 before closing). TLS is not probed (session tickets make a live
        connection readable); the retry in ``send`` covers it."""
        if isinstance(sock, ssl.SSLSocket):
            return True
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                return not poller.poll(0)
            return not select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _exchange(self, request: bytes) -> Response:
        reused = self._sock is not None
        sock = self._sock if self._sock is not None else self._connect()
        self._sock = sock
        deadline = time.monotonic() + self.timeout
        try:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                if reused:
                    raise _Stale() from None
                raise
            response, keep = _read_response(sock, deadline, reused)
        except BaseException:
            self.close()
            raise
        if keep:
            self._idle_since = time.monotonic()
        else:
            self.close()
        return response


def _read_response(sock: socket.socket, deadline: float, reused: bool) -> tuple[Response, bool]:
    reader = _Reader(sock, deadline)
    while True:
        try:
            head = reader.read_head()
        except (ConnectionResetError, _EndOfStream):
            if reused and not reader.received:
                raise _Stale() from None
            raise
        status_line, _, header_block = head.partition(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in header_block.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            continue  # interim response (100 Continue, 103 Early Hints): the real one follows
        break
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == b"HTTP/1.1" or "keep-alive" in connection)
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = reader.read_chunked()
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise ProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        body = reader.read_exactly(length)
    else:
        body = reader.read_to_end()
        keep = False
    return Response(status, headers, body), keep and not reader.buffer


class _EndOfStream(ConnectionError):
    """The server closed the connection in the middle of a response."""


class _Reader:
    """Buffered reads from a socket under one deadline, keeping only the first bytes of a body."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.received = False

    def _fill(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("response not complete before the deadline")
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _EndOfStream("connection closed by the server before the response was complete")
        self.received = True
        self.buffer += chunk

    def read_head(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                return head
            if len(self.buffer) > _MAX_HEAD:
                raise ProtocolError("response head too large")
            self._fill()

    def read_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                return line
            if len(self.buffer) > _MAX_HEAD:
                raise ProtocolError("chunk line too long")
            self._fill()

    def read_exactly(self, length: int) -> bytes:
        kept = b""
        while length:
            if not self.buffer:
                self._fill()
            taken, self.buffer = self.buffer[:length], self.buffer[length:]
            length -= len(taken)
            if len(kept) < _KEPT_BODY:
                kept += taken[: _KEPT_BODY - len(kept)]
        return kept

    def read_chunked(self) -> bytes:
        kept = b""
        while True:
            size_text = self.read_line().split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self.read_line():  # trailers, up to the empty line
                    pass
                return kept
            data = self.read_exactly(size)
            if len(kept) < _KEPT_BODY:
                kept += data[: _KEPT_BODY - len(kept)]
            if self.read_line():
                raise ProtocolError("chunk longer than its size")

    def read_to_end(self) -> bytes:
        kept = self.buffer[:_KEPT_BODY]
        self.buffer = b""
        while True:
            if time.monotonic() > self.deadline:
                raise TimeoutError("response not complete before the deadline")
            chunk = self.sock.recv(65536)
            if not chunk:
                return kept
            if len(kept) < _KEPT_BODY:
                kept += chunk[: _KEPT_BODY - len(kept)]
