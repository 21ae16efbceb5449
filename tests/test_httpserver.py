"""The recording server is the base of every receiver in the tests: prove it records and answers."""
from __future__ import annotations

import gzip
import http.client

import pytest

from tests.httpserver import RecordingServer, Reply, unused_port


def test_records_gzip_body_and_answers_as_told() -> None:
    with RecordingServer(lambda r: Reply(status=429, headers={"Retry-After": "7"})) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/v1/traces?x=1", body=gzip.compress(b"hello"), headers={"Content-Encoding": "gzip"})
        response = conn.getresponse()
        assert response.status == 429
        assert response.getheader("Retry-After") == "7"
        [request] = server.wait_for(1)
        assert request.path == "/v1/traces"
        assert request.query == {"x": ["1"]}
        assert request.data == b"hello"


def test_unused_port_refuses() -> None:
    conn = http.client.HTTPConnection("127.0.0.1", unused_port(), timeout=5)
    with pytest.raises(ConnectionRefusedError):
        conn.request("GET", "/")


def test_counts_connections_and_stop_closes_kept_alive_ones() -> None:
    server = RecordingServer().start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for _ in range(3):
        conn.request("POST", "/x", body=b"a")
        assert conn.getresponse().read() == b""
    assert server.connections == 1
    server.stop()
    with pytest.raises(ConnectionError):  # the kept-alive connection was closed by stop()
        conn.request("POST", "/x", body=b"b")
        conn.getresponse()
    assert len(server.requests) == 3


def test_raw_and_unannounced_close_replies() -> None:
    replies = iter([Reply(raw=b"HTTP/1.1 204 No Content\r\n\r\n"), Reply(close=True)])
    with RecordingServer(lambda r: next(replies)) as server:
        for status in (204, 200):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("POST", "/x", body=b"a")
            response = conn.getresponse()
            assert response.status == status
            response.read()
            assert conn.sock is None or conn.sock.recv(1) == b""  # closed by the server either way
        server.wait_for(2)
