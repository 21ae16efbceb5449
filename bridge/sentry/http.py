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
- connect and every read and write bounded by ``timeout``, and each response by a deadline;
- HTTP/1.1 pipelining (``send_many``): up to ``pipeline_depth`` requests are written with one ``sendall``,
  then their responses are read in order. The depth starts at 1, becomes 2 after a request answered on a
  connection that stays open, and ``max_pipeline_depth`` (1 024, and 2 MB per write) once a pair was
  answered in full that way; it
  falls back to 1 whenever a connection ends or fails, so a server that closes after each response
  (gunicorn's sync worker) is sent one request per connection, as without pipelining.

Pipelined POSTs are not idempotent, so what happens to requests left unanswered is decided here:
- the server announced ``Connection: close`` (or framed a body by closing): it processed nothing after that
  response (RFC 9112, 9.6): the rest are sent again on a new connection;
- the connection ended cleanly (no byte of the next response) after at least one answer, or a reused
  connection ended before any answer: the rest are sent again on a new connection. A request in that gap
  may have been processed without its answer reaching us; Sentry drops duplicates by ``event_id``, so
  one more copy of an envelope is harmless (a client report riding along could be counted twice);
- anything else (timeout, reset in the middle of a response, garbage, nothing at all from a fresh
  connection): that request and every one after it fail with the error; nothing is retried (a hung
  server would otherwise cost a timeout per request).
Each round either gets at least one answer or ends the call, so the retries are bounded.

Every failure is an ``OSError`` (``TimeoutError``, ``ConnectionError``, ``ssl.SSLError``, ``ProtocolError``)
and leaves the client ready for the next ``send`` on a new connection.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol, Union
from urllib.parse import urlsplit

__all__ = ["Response", "Sender", "BatchSender", "Outcome", "HttpClient", "ProtocolError", "AnswerTimeout"]

_MAX_HEAD = 64 * 1024
_KEPT_BODY = 512  # bytes of a response body kept for debug logs
_PROBE_AFTER = 1.0  # seconds of idleness after which a kept-alive connection is probed before reuse
# Requests written before their responses are read, at most. Each window costs the worker a few hand-overs
# of the GIL (after its write and its reads), and in a process whose request thread never waits each one
# can take a switch interval or more: 1 024 (was 256) lets one window carry a whole queue (issue 18).
_MAX_PIPELINE_DEPTH = 1024
_MAX_BATCH_BYTES = 2048 * 1024  # bytes written at once, at most (one request always goes, whatever its size)


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


Outcome = Union[Response, OSError]  # what became of one request of a batch


class BatchSender(Sender, Protocol):
    """A ``Sender`` that can also pipeline: ``send_many`` answers each request with its response or error."""

    @property
    def pipeline_depth(self) -> int:
        """How many requests the next ``send_many`` would write before reading (callers batch by it)."""

    def send_many(self, requests: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[Outcome]: ...


class ProtocolError(OSError):
    """The server answered with something that is not HTTP/1.x."""


class AnswerTimeout(TimeoutError):
    """The request was written, and its answer did not come (in full) in time: the server may have it."""


class _Again(ConnectionError):
    """The connection ended where the unanswered requests can be sent again on a new one (see above)."""


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
        self.max_pipeline_depth = _MAX_PIPELINE_DEPTH
        self._depth = 1
        self._sock: Optional[socket.socket] = None
        self._idle_since = 0.0
        self._heads: dict[int, tuple[Mapping[str, str], bytes]] = {}
        self.connections = 0  # connections opened so far (for tests and benchmarks)

    # -- public ---------------------------------------------------------------------------------
    @property
    def pipeline_depth(self) -> int:
        return self._depth

    def send(self, body: bytes, headers: Mapping[str, str]) -> Response:
        [outcome] = self.send_many([(body, headers)])
        if isinstance(outcome, Response):
            return outcome
        raise outcome

    def send_many(self, requests: Sequence[tuple[bytes, Mapping[str, str]]]) -> list[Outcome]:
        """POST every body, pipelined (see the module's docstring); one outcome per request, in order."""
        # Each request as its parts (no copy of the body); a batch is joined once, when it is written.
        wire = [(self._head_of(headers), b"%d\r\n\r\n" % len(body), body) for body, headers in requests]
        outcomes: list[Optional[Outcome]] = [None] * len(wire)
        sock = self._sock
        if sock is not None and time.monotonic() - self._idle_since >= self.probe_after and not self._alive(sock):
            self.close()
        pending = list(range(len(wire)))
        while pending:
            batch = _take(pending, wire, self._depth)
            answered, failure = self._exchange([part for i in batch for part in wire[i]], len(batch))
            for index, response in zip(batch, answered):
                outcomes[index] = response
            rest = batch[len(answered) :] + pending[len(batch) :]
            if failure is None:
                pending = rest
                if self._sock is not None and len(batch) == self._depth:
                    # One pipelined pair answered in full on a kept-alive connection shows the server takes
                    # pipelining: go to the full depth at once. Doubling from 1 took seven exchanges to
                    # reach 64, each a few GIL hand-overs: in a process whose request thread never waits,
                    # ~0.1 s during which the queue filled towards its cap (issue 18).
                    self._depth = min(self.max_pipeline_depth, 2 if self._depth < 2 else self.max_pipeline_depth)
                continue
            self._depth = 1
            if isinstance(failure, _Again):
                pending = rest
                continue
            for index in rest:
                outcomes[index] = failure
            pending = []
        return [outcome if outcome is not None else ConnectionError("not sent") for outcome in outcomes]

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- internals ------------------------------------------------------------------------------
    def _head_of(self, headers: Mapping[str, str]) -> bytes:
        """The request head up to ``Content-Length: ``, cached for the last few header mappings."""
        cached = self._heads.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        head = self._build_head(headers)
        if len(self._heads) >= 8:
            self._heads.clear()
        self._heads[id(headers)] = (headers, head)  # the mapping is kept, so its id is not reused meanwhile
        return head

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
            elif _OS_TIMEOUTS:
                # Plain TCP: the kernel enforces the timeout, so each read and write is one system call.
                # With a Python-level timeout each is a poll() and then the call, and each gives the GIL
                # up: in a busy process a background thread waits up to 5 ms to get it back, twice.
                # (TLS reads try SSL_read before polling, so they already cost one.)
                interval = _timeval(self.timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
                sock.settimeout(None)
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

    def _exchange(self, parts: list[bytes], count: int) -> tuple[list[Response], Optional[OSError]]:
        """Write ``count`` requests (their ``parts``) at once, read the responses in order: the responses
        received, and why the rest were not (``_Again``: send them again on a new connection; another
        error: they failed)."""
        reused = self._sock is not None
        answered: list[Response] = []
        try:
            sock = self._sock if self._sock is not None else self._connect()
        except OSError as exc:
            return answered, exc
        self._sock = sock
        try:
            try:
                sock.sendall(b"".join(parts))
            except BlockingIOError:  # SO_SNDTIMEO expired
                raise TimeoutError("request not written within the timeout") from None
            except (BrokenPipeError, ConnectionResetError):
                if reused:
                    raise _Again() from None
                raise
            reader = _Reader(sock)
            for _ in range(count):
                try:
                    response, keep = _read_response(reader, time.monotonic() + self.timeout)
                except (ConnectionResetError, _EndOfStream):
                    if not reader.received and (reused or answered):
                        raise _Again() from None  # ended between two responses: see the module's docstring
                    raise
                answered.append(response)
                if not keep:
                    self.close()
                    return answered, (_Again() if len(answered) < count else None)
        except OSError as exc:
            self.close()
            return answered, exc
        except BaseException:
            self.close()
            raise
        if reader.unread:  # bytes nobody asked for: do not reuse this connection
            self.close()
        else:
            self._idle_since = time.monotonic()
        return answered, None


_OS_TIMEOUTS = sys.platform.startswith("linux")  # where struct timeval is two longs


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` for SO_RCVTIMEO and SO_SNDTIMEO (zero would mean no timeout: at least 1 us)."""
    micros = max(1, round(seconds * 1_000_000))
    return struct.pack("ll", micros // 1_000_000, micros % 1_000_000)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except BlockingIOError:  # SO_RCVTIMEO expired
        raise AnswerTimeout("no answer within the timeout") from None


def _take(pending: list[int], wire: list[tuple[bytes, bytes, bytes]], depth: int) -> list[int]:
    """The next batch: up to ``depth`` requests and ``_MAX_BATCH_BYTES`` bytes (at least one request)."""
    size = 0
    count = 0
    for index in pending[:depth]:
        head, length, body = wire[index]
        size += len(head) + len(length) + len(body)
        if count and size > _MAX_BATCH_BYTES:
            break
        count += 1
    return pending[:count]


# A server answers a stream of envelopes with the same response head, byte for byte, again and again (its
# Date header changes once a second): each distinct head is parsed once, with what it says about the body
# and the connection (2.7 -> 1.3 us per response). The parsed headers are shared by the Responses of
# equal heads: nothing changes a Response's headers.
_PARSED_HEADS_MAX = 16
_CHUNKED, _TO_END = -1, -2  # the body's framing when it is not a Content-Length (>= 0)
_Head = tuple[int, dict[str, str], bool, int]  # status, headers, whether the connection stays, framing
_parsed_heads: dict[bytes, _Head] = {}


def _parse_head(raw: bytes) -> _Head:
    """A response head: its status code, headers (names lower-cased, repeats joined), whether the
    connection stays open after the response, and the body's framing."""
    head = raw.decode("latin-1")  # one decode for the whole head
    status_line, _, header_block = head.partition("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line.encode('latin-1')[:80]!r}")
    status = int(code)
    headers: dict[str, str] = {}
    for line in header_block.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        text = value.strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if status in (204, 304):
        framing = 0
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        framing = _CHUNKED
    elif "content-length" in headers:
        try:
            framing = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise ProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        if framing < 0:
            raise ProtocolError(f"bad Content-Length {headers['content-length']!r}")
    else:
        framing, keep = _TO_END, False
    return status, headers, keep, framing


def _read_response(reader: _Reader, deadline: float) -> tuple[Response, bool]:
    """One response from ``reader`` (which may already hold its first bytes); whether the connection stays."""
    reader.start(deadline)
    while True:
        raw = reader.read_head()
        parsed = _parsed_heads.get(raw)
        if parsed is None:
            parsed = _parse_head(raw)
            if not 100 <= parsed[0] < 200:  # interim responses are not worth keeping
                if len(_parsed_heads) >= _PARSED_HEADS_MAX:
                    _parsed_heads.clear()
                _parsed_heads[raw] = parsed
        status, headers, keep, framing = parsed
        if 100 <= status < 200:
            continue  # interim response (100 Continue, 103 Early Hints): the real one follows
        break
    if framing >= 0:
        body = reader.read_exactly(framing) if framing else b""
    elif framing == _CHUNKED:
        body = reader.read_chunked()
    else:
        body = reader.read_to_end()
    return Response(status, headers, body), keep


class _EndOfStream(ConnectionError):
    """The server closed the connection in the middle of a response."""


class _Reader:
    """Buffered reads from a socket (responses one after the other), keeping only the first bytes of a body.

    Reads advance an offset into the buffer, which is compacted only when more bytes arrive: answers to a
    pipelined batch sit in the buffer together, and slicing it per answer would copy it over and over."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        self.buffer = b""
        self.pos = 0  # bytes of the buffer already consumed
        self.received = False  # whether any byte of the current response arrived

    @property
    def unread(self) -> int:
        return len(self.buffer) - self.pos

    def start(self, deadline: float) -> None:
        """A new response begins (its first bytes may be buffered already)."""
        self.deadline = deadline
        self.received = self.pos < len(self.buffer)

    def _fill(self) -> None:
        if time.monotonic() > self.deadline:
            raise AnswerTimeout("response not complete before the deadline")
        chunk = _recv(self.sock)
        if not chunk:
            raise _EndOfStream("connection closed by the server before the response was complete")
        self.received = True
        self.buffer = (self.buffer[self.pos :] if self.pos else self.buffer) + chunk
        self.pos = 0

    def _read_until(self, marker: bytes, what: str) -> bytes:
        while True:
            end = self.buffer.find(marker, self.pos)
            if end >= 0:
                found = self.buffer[self.pos : end]
                self.pos = end + len(marker)
                return found
            if self.unread > _MAX_HEAD:
                raise ProtocolError(what)
            self._fill()

    def read_head(self) -> bytes:
        return self._read_until(b"\r\n\r\n", "response head too large")

    def read_line(self) -> bytes:
        return self._read_until(b"\r\n", "chunk line too long")

    def read_exactly(self, length: int) -> bytes:
        kept = b""
        while length:
            if not self.unread:
                self._fill()
            taken = min(length, self.unread)
            if len(kept) < _KEPT_BODY:
                kept += self.buffer[self.pos : self.pos + min(taken, _KEPT_BODY - len(kept))]
            self.pos += taken
            length -= taken
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
        kept = self.buffer[self.pos : self.pos + _KEPT_BODY]
        self.buffer, self.pos = b"", 0
        while True:
            if time.monotonic() > self.deadline:
                raise AnswerTimeout("response not complete before the deadline")
            chunk = _recv(self.sock)
            if not chunk:
                return kept
            if len(kept) < _KEPT_BODY:
                kept += chunk[: _KEPT_BODY - len(kept)]
