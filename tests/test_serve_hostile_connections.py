"""Hostile connections to the built-in server: a TLS handshake that never finishes, a slowloris sender,
HTTP/1.1 pipelining with a bad request in the middle, and a noisy sender held to its share of the queue."""

from __future__ import annotations

import http.client
import select
import socket
import time
from pathlib import Path
from typing import Optional

import pytest

from bridge.receiver.app import ReceiverApp
from bridge.receiver.auth import TokenFile
from bridge.receiver.guard import Guard
from bridge.receiver.limits import SenderLimits
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink
from bridge.receiver.tls import server_context
from bridge.sentry.dsn import Dsn
from tests.httpserver import Reply
from tests.peers.sentry import SentryReceiver
from tests.serve_support import RecordingSink, encode, finished_spans, running
from tests.test_serve_security import request_span
from tests.tls_support import make_pki

TOKEN = "pipeline-token-000000000000"


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` (EOF or reset) before ``within`` seconds pass."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_a_tls_handshake_that_never_finishes_is_dropped(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    context = server_context(str(pki.server_cert), str(pki.server_key))
    app = ReceiverApp(RecordingSink())
    with running(app, ssl_context=context, handshake_timeout=0.5, threads=2) as server:
        host, port = server.server_address[:2]
        stalled = [socket.create_connection((str(host), int(port)), timeout=10) for _ in range(2)]
        stalled[1].sendall(b"\x16\x03\x01\x00")  # the first bytes of a ClientHello, and nothing more
        assert all(closed_by_server(sock, 20) for sock in stalled)  # bounded: well before the client gives up
        for sock in stalled:
            sock.close()


def test_a_slowloris_sender_is_cut_off(tmp_path: Path) -> None:
    app = ReceiverApp(RecordingSink())
    with running(app, request_timeout=1.0, idle_timeout=5.0) as server:
        host, port = server.server_address[:2]
        sock = socket.create_connection((str(host), int(port)), timeout=10)
        started = time.monotonic()
        cut_off = False
        request = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200
        for byte in request:  # one byte per 50 ms: each read is quick, the request as a whole is not
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut_off = True
                break
            readable, _, _ = select.select([sock], [], [], 0.05)  # the fault being injected is the slowness itself
            if readable and closed_by_server(sock, 1):
                cut_off = True
                break
        elapsed = time.monotonic() - started
        sock.close()
    assert cut_off, "the server kept waiting for a request trickling in"
    assert elapsed < len(request) * 0.05  # it did not wait for the whole trickle


def test_pipelined_requests_with_a_bad_one_in_the_middle() -> None:
    sink = RecordingSink()
    with running(ReceiverApp(sink)) as server:
        host, port = server.server_address[:2]
        body = bytes(encode(finished_spans(request_span, {"service.name": "shop"})).SerializeToString())

        def request(data: bytes) -> bytes:
            head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            return head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data

        sock = socket.create_connection((str(host), int(port)), timeout=10)
        sock.sendall(request(body) + b"GARBAGE \x00\x01 NOT HTTP\r\n\r\n" + request(body))
        answers = read_responses(sock)
        sock.close()
    assert [status for status, _ in answers] == [200, 400]  # the third is never served: the connection closed
    assert len(sink.spans) == 1


def read_responses(sock: socket.socket) -> list[tuple[int, dict[str, str]]]:
    """Every HTTP response on ``sock`` (read as pipelined: one after the other) until the server closes it."""
    stream = sock.makefile("rb")
    answers = []
    while True:
        status_line = stream.readline(65537)
        if not status_line:
            break
        headers: dict[str, str] = {}
        for line in iter(lambda: stream.readline(65537), b"\r\n"):
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        stream.read(int(headers.get("content-length", "0")))
        answers.append((int(status_line.split()[1]), headers))
        if headers.get("connection", "").lower() == "close":
            assert stream.read() == b""  # nothing after a response that closes
            break
    return answers


@pytest.mark.parametrize("by", ["token", "address"])
def test_a_noisy_sender_gets_429_before_the_others(by: str, tmp_path: Path, sentry_receiver: SentryReceiver) -> None:
    """Senders told apart by their token, or without authentication by their address (two loopback ones)."""
    sentry_receiver.responder = lambda request: Reply(hang=True)  # Sentry takes one envelope, never answers
    tokens = None
    if by == "token":
        tokens_path = tmp_path / "tokens.txt"
        tokens_path.write_text("noisy-sender-0000000000000\nquiet-sender-0000000000000\n")
        tokens = TokenFile(str(tokens_path))
    sink = SentrySink(Routes({}, Dsn.parse(sentry_receiver.dsn)), queue_size=4, root_delay=0)
    limits = SenderLimits(sink.queue_fill, threshold=0.5)
    guard = Guard(ReceiverApp(sink), tokens=tokens, limits=limits)
    body = bytes(encode(finished_spans(request_span, {"service.name": "shop"})).SerializeToString())
    try:
        with running(guard) as server:
            host, port = server.server_address[:2]

            def send(sender: str) -> tuple[int, Optional[str]]:
                source = ("127.0.0.2" if sender == "noisy" else "127.0.0.3", 0)
                connection = http.client.HTTPConnection(str(host), int(port), timeout=10, source_address=source)
                headers = {"Content-Type": "application/x-protobuf"}
                if tokens is not None:
                    headers["Authorization"] = f"Bearer {sender}-sender-0000000000000"
                connection.request("POST", "/v1/traces", body, headers)
                answer = connection.getresponse()
                answer.read()
                connection.close()
                return answer.status, answer.getheader("Retry-After")

            assert send("quiet") == (200, None)
            noisy: list[tuple[int, Optional[str]]] = []
            while len(noisy) < 10 and (not noisy or noisy[-1][0] == 200):
                noisy.append(send("noisy"))
            fill_when_refused = sink.queue_fill()
            quiet = send("quiet")
    finally:
        sink.shutdown(0.5)
    assert noisy[-1] == (429, "2"), noisy
    assert fill_when_refused < 1  # refused on its share, while the queue still had room
    assert quiet == (200, None)  # ... room the quiet sender still gets
    assert limits.refused == 1


@pytest.mark.parametrize("load", [1, 5])
def test_fair_share_by_moving_byte_sums(load: int) -> None:
    now = [0.0]
    fill = [0.0]
    limits = SenderLimits(lambda: fill[0], threshold=0.5, half_life=10, clock=lambda: now[0])
    limits.charge("a", 1000 * load)
    limits.charge("b", 1000)
    assert limits.admit("a") is None  # the queue is not filling: everyone is admitted
    fill[0] = 0.6
    assert (limits.admit("a") is not None) is (load > 1)
    assert limits.admit("b") is None
    now[0] = 1000.0  # long quiet: sums decay, quiet senders are forgotten
    limits.charge("b", 10)
    assert limits.senders() == 1 and limits.admit("a") is None




def test_the_request_deadline_starts_again_for_each_request_on_a_kept_alive_connection() -> None:
    sink = RecordingSink()
    with running(ReceiverApp(sink), request_timeout=0.5, idle_timeout=5.0) as server:
        host, port = server.server_address[:2]
        body = bytes(encode(finished_spans(request_span, {"service.name": "shop"})).SerializeToString())
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        statuses, sockets = [], []
        for _ in range(2):
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            answer = connection.getresponse()
            answer.read()
            statuses.append(answer.status)
            sockets.append(connection.sock)
            time.sleep(1.0)  # the scenario: the connection idles longer than a request may take
        connection.close()
    assert statuses == [200, 200] and len(sink.spans) == 2
    assert sockets[0] is sockets[1] is not None  # one connection, kept alive
