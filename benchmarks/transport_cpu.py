"""CPU cost per envelope POST, as the host process pays it.

    python -m benchmarks.transport_cpu [-n 5000] [--repeat 5]

A minimal keep-alive HTTP/1.1 server runs in a *subprocess* (its CPU is not counted); this process's CPU
time (``time.process_time()``: every thread, user + system) is divided by the number of POSTs. Reported
is the median of ``--repeat`` runs, in microseconds:

- ``HttpClient.send``: our client alone (header block, one ``sendall``, one ``recv``, parse), body gzipped;
- ``gzip+HttpClient.send``: the POST including compression;
- ``serialize+gzip+send``: what the worker does per envelope after building it;
- ``http.client``: the standard library's keep-alive client, same gzipped body and headers;
- ``Transport burst``: ``submit`` N envelopes, then ``flush``: caller and worker thread together;
- ``Transport paced``: one ``submit`` per millisecond: every envelope pays a worker wake-up; compare with
  ``inline paced``, the same POSTs made by the caller itself at the same pace (no thread): at low rates
  caches are cold and both cost far more than in a tight loop, so the difference is the wake-up;
- ``submit (caller)``: the caller thread's CPU per ``submit`` during the burst;
- ``pipelined x8 (raw)``: 8 requests per ``sendall``, then 8 answers: the most pipelining could save.
"""
from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.sentry.dsn import Dsn  # noqa: E402
from bridge.sentry.envelope import Envelope  # noqa: E402
from bridge.sentry.http import HttpClient  # noqa: E402
from bridge.sentry.transport import Transport, _gzip  # noqa: E402

ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n"
    b'{"id":"0123456789abcdef0123456789abcdef"}'
)


def serve() -> None:
    """The server side (run in a subprocess): answer every request on every connection, pipelined too."""

    def handle(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    data = conn.recv(262144)
                    if not data:
                        return
                    buffer += data
                    continue
                length = 0
                for line in buffer[:end].split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                while len(buffer) < end + 4 + length:
                    data = conn.recv(262144)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[end + 4 + length :]
                answers = 1
                while buffer.find(b"\r\n\r\n") >= 0 and _complete(buffer):  # pipelined: answer in one write
                    buffer = _skip_one(buffer)
                    answers += 1
                conn.sendall(ANSWER * answers)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def _request_length(buffer: bytes) -> int:
    end = buffer.find(b"\r\n\r\n")
    length = 0
    for line in buffer[:end].split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return end + 4 + length


def _complete(buffer: bytes) -> bool:
    return len(buffer) >= _request_length(buffer)


def _skip_one(buffer: bytes) -> bytes:
    return buffer[_request_length(buffer) :]


def envelope() -> Envelope:
    """A typical transaction envelope: about 1.5 kB before compression."""
    now = time.time()
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "transaction",
        "platform": "python",
        "transaction": "GET /users/{id}",
        "transaction_info": {"source": "route"},
        "start_timestamp": now - 0.02,
        "timestamp": now,
        "environment": "production",
        "release": "shop@1.4.2",
        "contexts": {
            "trace": {
                "trace_id": uuid.uuid4().hex,
                "span_id": uuid.uuid4().hex[:16],
                "op": "http.server",
                "status": "ok",
                "data": {
                    "http.request.method": "GET",
                    "http.route": "/users/{id}",
                    "url.path": "/users/42",
                    "http.response.status_code": 200,
                    "server.address": "shop.example.com",
                    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
                },
            },
            "otel": {"resource": {"service.name": "shop", "telemetry.sdk.name": "opentelemetry"}},
        },
        "spans": [
            {
                "trace_id": uuid.uuid4().hex,
                "span_id": uuid.uuid4().hex[:16],
                "parent_span_id": uuid.uuid4().hex[:16],
                "op": "db",
                "description": f"SELECT id, name, email FROM users WHERE id = %s -- {i}",
                "start_timestamp": now - 0.015,
                "timestamp": now - 0.01,
                "status": "ok",
                "data": {"db.system": "postgresql"},
            }
            for i in range(3)
        ],
    }
    dsc = {"trace_id": uuid.uuid4().hex, "public_key": "0123456789abcdef", "environment": "production"}
    return Envelope.for_event(event, dsc)


HEADERS = {
    "Content-Type": "application/x-sentry-envelope",
    "X-Sentry-Auth": "Sentry sentry_key=0123456789abcdef, sentry_version=7, sentry_client=otel-sentry-bridge/0.1.0",
    "User-Agent": "otel-sentry-bridge/0.1.0",
    "Content-Encoding": "gzip",
}


def cpu_us(run: Callable[[], object], n: int) -> float:
    started = time.process_time()
    run()
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        report(port, args.n, args.repeat)
    finally:
        server.kill()
        server.wait()


def report(port: int, n: int, repeat: int) -> None:
    env = envelope()
    raw = env.serialize()
    body = _gzip(raw)
    url = f"http://127.0.0.1:{port}/api/1/envelope/"
    dsn = Dsn.parse(f"http://0123456789abcdef@127.0.0.1:{port}/1")
    print(f"envelope: {len(raw)} bytes, gzipped {len(body)} bytes; N={n}, median of {repeat} runs")

    def ours() -> None:
        client = HttpClient(url)
        for _ in range(n):
            client.send(body, HEADERS)
        client.close()

    def ours_gzip() -> None:
        client = HttpClient(url)
        for _ in range(n):
            client.send(_gzip(raw), HEADERS)
        client.close()

    def ours_full() -> None:
        client = HttpClient(url)
        for _ in range(n):
            client.send(_gzip(env.serialize()), HEADERS)
        client.close()

    def stdlib() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(n):
            conn.request("POST", "/api/1/envelope/", body, HEADERS)
            conn.getresponse().read()
        conn.close()

    caller: list[float] = []

    def burst() -> None:
        transport = Transport(dsn, queue_size=n + 1)
        started = time.thread_time()
        for _ in range(n):
            transport.submit("transaction", lambda: env)
        caller.append((time.thread_time() - started) / n * 1e6)
        assert transport.flush(60)
        assert transport.stats().sent == n, transport.stats()
        transport.shutdown(1)

    slow = max(1, n // 5)  # paced runs take 1 ms of wall time per envelope

    def inline_paced() -> None:
        client = HttpClient(url)
        for _ in range(slow):
            client.send(_gzip(env.serialize()), HEADERS)
            time.sleep(0.001)
        client.close()

    def paced() -> None:
        transport = Transport(dsn)
        for _ in range(slow):
            transport.submit("transaction", lambda: env)
            time.sleep(0.001)  # pacing the load, not synchronization: flush below waits for the work
        assert transport.flush(5)
        assert transport.stats().sent == slow, transport.stats()
        transport.shutdown(1)

    def pipelined(depth: int = 8) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b"POST /api/1/envelope/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        batch = (head + body) * depth
        for _ in range(n // depth):
            sock.sendall(batch)
            want, got = len(ANSWER) * depth, 0
            while got < want:
                got += len(sock.recv(262144))
        sock.close()

    cases: list[tuple[str, Callable[[], None], int]] = [
        ("HttpClient.send (gzipped body)", ours, n),
        ("gzip+HttpClient.send", ours_gzip, n),
        ("serialize+gzip+HttpClient.send", ours_full, n),
        ("http.client (gzipped body)", stdlib, n),
        ("Transport burst (submit N, flush)", burst, n),
        ("inline paced (1 POST/ms, no thread)", inline_paced, slow),
        ("Transport paced (1 submit/ms)", paced, slow),
        ("pipelined x8 (raw socket)", pipelined, n),
    ]
    ours()  # warm up: imports, allocator
    for name, run, count in cases:
        figures = [cpu_us(run, count) for _ in range(repeat)]
        print(f"{name:38s} {statistics.median(figures):7.1f} us/POST   (min {min(figures):.1f})")
    print(f"{'submit (caller thread)':38s} {statistics.median(caller):7.1f} us/call   (min {min(caller):.1f})")
    print(f"serialize alone: {cpu_us(lambda: [env.serialize() for _ in range(n)], n):.1f} us; "
          f"gzip alone: {cpu_us(lambda: [_gzip(raw) for _ in range(n)], n):.1f} us")


if __name__ == "__main__":
    main()
