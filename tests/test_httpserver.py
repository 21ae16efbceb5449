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
