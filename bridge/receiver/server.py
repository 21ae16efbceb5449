"""A small threaded HTTP/1.1 server for the receiver's WSGI app, from the standard library only.

Why not ``wsgiref``: it speaks HTTP/1.0 (a new connection per export) and cannot read chunked request
bodies, which is what Node's OTLP exporter sends when it gzips. This server keeps connections alive,
reads ``Content-Length`` and ``chunked`` bodies, serves at most ``threads`` connections at once (more
wait in the listen backlog), closes idle connections after ``idle_timeout`` seconds, and stops
gracefully: ``stop()`` closes the listening socket and idle connections, lets requests in progress
finish (up to a timeout), and answers them with ``Connection: close``. With an ``ssl_context`` it speaks
TLS (the handshake bounded by ``handshake_timeout``); a request must arrive whole within ``request_timeout``
seconds of its first byte (``connections.py``).

Responses are buffered (the receiver's are small). For anything else, use gunicorn.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import unquote

from bridge.receiver.connections import DeadlineReader, reader, secure

__all__ = ["WsgiServer", "BodyError"]

logger = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
DRAIN_MAX = 64 << 20  # unread request body discarded (to answer cleanly) up to this many bytes; more: close


class BodyError(OSError):
    """The request body is not framed as its headers say (an ``OSError``, as gunicorn's body errors are)."""


class _Body:
    """``wsgi.input``: at most ``length`` bytes (Content-Length), or a chunked body, de-chunked."""

    def __init__(self, rfile: Any, length: Optional[int]) -> None:
        self._rfile = rfile
        self._left = length or 0  # bytes left: of the body (Content-Length) or of the current chunk
        self._chunked = length is None
        self._done = not self._chunked and self._left == 0
        self._broken = False  # a framing error: the rest of the connection cannot be trusted

    @property
    def done(self) -> bool:
        return self._done

    def read(self, size: int = -1) -> bytes:
        if self._broken:
            raise BodyError("the request body is broken")
        try:
            return self._read(size)
        except BodyError:
            self._broken = True
            raise

    def _read(self, size: int) -> bytes:
        out: list[bytes] = []
        wanted = sys.maxsize if size is None or size < 0 else size
        while wanted > 0 and not self._done:
            if self._left == 0 and not self._next_chunk():
                break
            data = self._rfile.read(min(self._left, wanted, 1 << 20))
            if not data:
                raise BodyError("the connection closed inside the request body")
            out.append(data)
            self._left -= len(data)
            wanted -= len(data)
            if self._left == 0:
                if not self._chunked:
                    self._done = True
                elif self._rfile.read(2) != b"\r\n":
                    raise BodyError("a chunk is not followed by CRLF")
        return b"".join(out)

    def _next_chunk(self) -> bool:
        line = self._rfile.readline(1026)
        if not line.endswith(b"\n"):
            raise BodyError("a bad chunk-size line")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError("a bad chunk size") from None
        if size < 0:
            raise BodyError("a bad chunk size")
        if size == 0:
            for _ in range(100):  # trailer fields, then an empty line
                trailer = self._rfile.readline(8192)
                if trailer in (b"\r\n", b"\n", b""):
                    break
            self._done = True
            return False
        self._left = size
        return True

    def discard(self, limit: int) -> bool:
        """Read and drop the rest (up to ``limit`` bytes); True when the body was read to its end."""
        if self._broken:
            return False
        try:
            while not self._done and limit > 0:
                data = self.read(min(limit, 1 << 20))
                if not data:
                    break
                limit -= len(data)
        except OSError:
            return False
        return self._done


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # a request line that cannot be parsed gets a real status line (the base class would answer it as
    # HTTP/0.9: a bare body that a pipelining client cannot tell from the next response)
    default_request_version = "HTTP/1.0"
    server: WsgiServer

    def setup(self) -> None:
        if self.server.ssl_context is not None:  # the handshake in this thread, bounded (connections.py)
            self.request = secure(self.request, self.server.ssl_context, self.server.handshake_timeout)
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)  # an idle or stalled connection ends
        plain = self.rfile
        self.rfile = reader(self.connection, self.server.idle_timeout, self.server.request_timeout)
        plain.close()  # the base class's reader: closed, so that it holds no reference to the socket

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):  # the server closes the plain socket it accepted,
                try:  # which the TLS socket took over: close the TLS one here
                    self.request.close()
                except OSError:
                    pass

    def handle(self) -> None:
        self.server._track(self, busy=False)
        try:
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection and not self.server.stopping:
                self.server._track(self, busy=False)
                raw = getattr(self.rfile, "raw", None)
                if isinstance(raw, DeadlineReader):
                    raw.next_request()
                self.handle_one_request()
        finally:
            self.server._untrack(self)

    def parse_request(self) -> bool:
        self.server._track(self, busy=True)
        return bool(super().parse_request())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("%s " + format, self.address_string(), *args)

    def _run(self) -> None:
        transfer = self.headers.get("Transfer-Encoding", "").strip().lower()
        length_text = self.headers.get("Content-Length", "").strip()
        if transfer:
            if transfer.split(",")[-1].strip() != "chunked":
                return self._fail(501, "unsupported Transfer-Encoding")
            body = _Body(self.rfile, None)
        elif length_text:
            if not length_text.isdigit():
                return self._fail(400, "bad Content-Length")
            body = _Body(self.rfile, int(length_text))
        else:
            body = _Body(self.rfile, 0)
        environ = self._environ(body, None if transfer else length_text)
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            logger.exception("otel-sentry-bridge serve: the WSGI app failed")
            return self._fail(500, "internal error")
        if not started:
            return self._fail(500, "the app did not start a response")
        payload = b"" if self.command == "HEAD" else b"".join(chunks)
        # the app may ask to close rather than read an unwanted body (e.g. a request without a valid token)
        close = any(n.lower() == "connection" and "close" in str(v).lower() for n, v in started[1])
        finished = False if close else body.discard(DRAIN_MAX)
        code, _, reason = str(started[0]).partition(" ")
        self.send_response(int(code), reason)
        for name, value in started[1]:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if not finished or self.server.stopping or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _run

    def _fail(self, status: int, message: str) -> None:
        self.close_connection = True
        data = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _environ(self, body: _Body, content_length: Optional[str]) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": str(self.client_address[0]),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.server.ssl_context is not None else "http",
            "wsgi.input": body,
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        if content_length:
            environ["CONTENT_LENGTH"] = content_length
        for name, value in self.headers.items():
            if "_" in name:
                continue  # "X_A" and "X-A" would be one CGI name: drop the ambiguous form, as gunicorn does
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[key] = f"{environ[key]},{value.strip()}" if key in environ else value.strip()
        return environ


class WsgiServer(ThreadingHTTPServer):
    """``WsgiServer(app, host, port)``; ``serve_forever()`` in a thread; ``stop(timeout)`` from another."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        app: WsgiApp,
        host: str,
        port: int,
        *,
        threads: int = 16,
        idle_timeout: float = 30.0,
        request_timeout: float = 60.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout  # a request's bytes must all arrive within this (slowloris)
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.stopping = False
        self._slots = threading.BoundedSemaphore(max(1, threads))
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: dict[_Handler, bool] = {}  # handler → busy
        self._serving = threading.Event()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query): not needed, sometimes slow.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.25):  # all threads busy: leave the rest in the backlog
            if self.stopping:
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving.set()
        super().serve_forever(poll_interval)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away, a timeout: nothing to report
            logger.debug("connection from %s ended: %r", client_address, error)
        else:
            logger.exception("otel-sentry-bridge serve: error on a connection from %s", client_address)

    def _track(self, handler: _Handler, *, busy: bool) -> None:
        with self._lock:
            self._connections[handler] = busy
            self._changed.notify_all()

    def _untrack(self, handler: _Handler) -> None:
        with self._lock:
            self._connections.pop(handler, None)
            self._changed.notify_all()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop accepting, close idle connections, wait for requests in progress; True if they all ended."""
        deadline = time.monotonic() + max(0.0, timeout)
        self.stopping = True
        if self._serving.is_set():
            self.shutdown()  # serve_forever returns
        self.server_close()
        with self._lock:
            while True:
                for handler, busy in list(self._connections.items()):
                    if not busy:
                        _close_idle(handler)
                left = deadline - time.monotonic()
                if not self._connections or left <= 0:
                    return not self._connections
                self._changed.wait(left)


def _close_idle(handler: _Handler) -> None:
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
