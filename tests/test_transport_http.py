"""The envelope HTTP client against a real loopback HTTP/1.1 server: framing, keep-alive, faults."""
from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from bridge.sentry.http import HttpClient, ProtocolError, Response
from tests.httpserver import RecordingServer, Reply, Request, unused_port

HEADERS = {"Content-Type": "application/x-sentry-envelope", "User-Agent": "test/1"}


def test_posts_body_and_headers_and_reads_the_answer() -> None:
    reply = Reply(201, {"X-Sentry-Rate-Limits": "60::organization", "X-Dup": "a"}, b'{"id":"x"}')
    with RecordingServer(lambda r: reply) as server:
        client = HttpClient(server.url + "/api/1/envelope/?a=b", timeout=5)
        response = client.send(b"hello", HEADERS)
        [request] = server.wait_for(1)
    assert (response.status, response.body) == (201, b'{"id":"x"}')
    assert response.headers["x-sentry-rate-limits"] == "60::organization"
    assert request.method == "POST"
    assert request.path == "/api/1/envelope/"
    assert request.query == {"a": ["b"]}
    assert request.body == b"hello"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["content-type"] == "application/x-sentry-envelope"
    assert request.headers["user-agent"] == "test/1"
    assert request.headers["content-length"] == "5"


def test_reuses_one_connection() -> None:
    with RecordingServer() as server:
        client = HttpClient(server.url + "/x", timeout=5)
        statuses = [client.send(b"%d" % i, HEADERS).status for i in range(50)]
        requests = server.wait_for(50)
    assert statuses == [200] * 50
    assert [r.body for r in requests] == [b"%d" % i for i in range(50)]
    assert server.connections == client.connections == 1


def test_headers_can_change_between_requests() -> None:
    with RecordingServer() as server:
        client = HttpClient(server.url + "/x", timeout=5)
        client.send(b"a", {"X-A": "1"})
        client.send(b"b", {"X-A": "2"})
        first, second = server.wait_for(2)
    assert (first.headers["x-a"], second.headers["x-a"]) == ("1", "2")


def test_header_injection_is_refused() -> None:
    client = HttpClient("http://127.0.0.1:1/x")
    with pytest.raises(ValueError, match="line break"):
        client.send(b"", {"X-A": "1\r\nX-B: 2"})


def test_connection_close_is_honoured() -> None:
    with RecordingServer(lambda r: Reply(headers={"Connection": "close"})) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        assert [client.send(b"x", HEADERS).status for _ in range(3)] == [200] * 3
        server.wait_for(3)
    assert server.connections == client.connections == 3


@pytest.mark.parametrize("probe_after", [0.0, 3600.0], ids=["probed", "retried"])
def test_server_closing_an_idle_connection_is_reconnected_once(probe_after: float) -> None:
    with RecordingServer(lambda r: Reply(close=True)) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        client.probe_after = probe_after
        assert client.send(b"one", HEADERS).status == 200
        assert client.send(b"two", HEADERS).status == 200
        requests = server.wait_for(2)
    assert [r.body for r in requests] == [b"one", b"two"]  # nothing sent twice
    assert server.connections == client.connections == 2


def test_chunked_response_with_trailers_is_read() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-T: 1\r\n\r\n"
    replies = iter([Reply(raw=chunked), Reply()])

    with RecordingServer(lambda r: next(replies, Reply())) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        response = client.send(b"x", HEADERS)
        assert (response.status, response.body) == (200, b"abcdefg")
        assert client.send(b"y", HEADERS).status == 200  # the server closed after its raw reply: reconnected
        server.wait_for(2)


def test_body_delimited_by_close_and_interim_responses() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 202 Accepted\r\nServer: old\r\n\r\nsome body until close"
    with RecordingServer(lambda r: Reply(raw=raw)) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        response = client.send(b"x", HEADERS)
    assert (response.status, response.body) == (202, b"some body until close")
    assert client._sock is None  # a close-delimited body cannot be followed by another response


def test_garbage_answer_is_a_protocol_error_and_the_client_recovers() -> None:
    replies = iter([Reply(raw=b"SSH-2.0-OpenSSH\r\n\r\n"), Reply()])
    with RecordingServer(lambda r: next(replies)) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        with pytest.raises(ProtocolError):
            client.send(b"x", HEADERS)
        assert client.send(b"x", HEADERS).status == 200


def test_truncated_body_is_an_error() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    with RecordingServer(lambda r: Reply(raw=raw)) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        with pytest.raises(ConnectionError):
            client.send(b"x", HEADERS)


def test_refused() -> None:
    client = HttpClient(f"http://127.0.0.1:{unused_port()}/x", timeout=5)
    with pytest.raises(ConnectionRefusedError):
        client.send(b"x", HEADERS)


def test_hanging_server_times_out_within_the_timeout() -> None:
    with RecordingServer(lambda r: Reply(hang=True)) as server:
        client = HttpClient(server.url + "/x", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.send(b"x", HEADERS)
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0


def test_ipv6_literal_host() -> None:
    try:
        server = RecordingServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server:
        client = HttpClient(server.url + "/x", timeout=5)
        assert client.host == "::1"
        assert client.send(b"six", HEADERS).status == 200
        [request] = server.wait_for(1)
    assert request.headers["host"] == f"[::1]:{server.port}"
    assert request.body == b"six"


def test_not_an_http_url() -> None:
    with pytest.raises(ValueError):
        HttpClient("ftp://example.com/x")


def test_https_with_certificate_verification(tmp_path: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    with RecordingServer(tls=server_side) as server:
        untrusting = HttpClient(server.url + "/x", timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.send(b"x", HEADERS)
        client = HttpClient(server.url + "/x", timeout=5, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert [client.send(b"%d" % i, HEADERS).status for i in range(3)] == [200] * 3
        requests = server.wait_for(3)
    assert [r.body for r in requests] == [b"0", b"1", b"2"]
    assert client.connections == 1


# -- pipelining (send_many) ----------------------------------------------------------------------------


def _warm(client: HttpClient, depth: int) -> None:
    """Grow the pipeline to ``depth`` (1, then 2, then the full depth, each after a batch answered in full on a
    kept-alive connection)."""
    while client.pipeline_depth < depth:
        client.send_many([(b"warm", HEADERS)] * client.pipeline_depth)


def test_send_many_pipelines_over_one_connection_in_order() -> None:
    with RecordingServer() as server:
        client = HttpClient(server.url + "/x", timeout=5)
        assert client.pipeline_depth == 1  # slow start
        outcomes = client.send_many([(b"%d" % i, HEADERS) for i in range(200)])
        requests = server.wait_for(200)
    assert [o.status for o in outcomes if isinstance(o, Response)] == [200] * 200
    assert [r.body for r in requests] == [b"%d" % i for i in range(200)]
    assert server.connections == client.connections == 1
    assert client.pipeline_depth == 1024  # 1, then 2 answered in full: the full depth for the other 197


@pytest.mark.parametrize("announced", [True, False], ids=["connection-close", "silent-close"])
def test_a_server_closing_mid_batch_gets_the_rest_again_each_once(announced: bool) -> None:
    count = 0

    def responder(request: Request) -> Reply:
        nonlocal count
        count += 1
        if count != 7:  # the 7th request: the 4th of the batch of 16, after warming (1 + 2 requests)
            return Reply()
        return Reply(headers={"Connection": "close"}) if announced else Reply(close=True)

    with RecordingServer(responder) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        _warm(client, 16)  # 1 + 2 = 3 requests
        server.clear()
        outcomes = client.send_many([(b"%d" % i, HEADERS) for i in range(16)])
        requests = server.wait_for(16)
    assert all(isinstance(o, Response) and o.status == 200 for o in outcomes)
    assert [r.body for r in requests] == [b"%d" % i for i in range(16)]  # nothing twice: the server said or did close
    assert client.connections == 2


def test_a_request_processed_but_unanswered_before_a_close_is_sent_again() -> None:
    """The ambiguous case: the server took request 3 of a batch and closed without answering."""
    count = 0

    def responder(request: Request) -> Reply:
        nonlocal count
        count += 1
        return Reply(raw=b"") if count == 3 + 3 else Reply()  # after 1 + 2 warming requests

    with RecordingServer(responder) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        _warm(client, 4)
        server.clear()
        outcomes = client.send_many([(b"%d" % i, HEADERS) for i in range(4)])
        requests = server.wait_for(5)
    assert all(isinstance(o, Response) and o.status == 200 for o in outcomes)
    assert [r.body for r in requests] == [b"0", b"1", b"2", b"2", b"3"]  # request 2 twice (Sentry dedupes by event_id)


def test_a_hang_mid_batch_fails_that_request_and_the_rest_but_keeps_the_answers() -> None:
    count = 0

    def responder(request: Request) -> Reply:
        nonlocal count
        count += 1
        return Reply(hang=True) if count == 3 + 2 else Reply()

    with RecordingServer(responder) as server:
        client = HttpClient(server.url + "/x", timeout=0.3)
        _warm(client, 4)
        outcomes = client.send_many([(b"%d" % i, HEADERS) for i in range(6)])
    assert [type(o).__name__ for o in outcomes] == ["Response", "AnswerTimeout", *["AnswerTimeout"] * 4]
    assert client.pipeline_depth == 1 and client._sock is None


def test_send_many_to_nothing_listening_fails_every_request_at_once() -> None:
    client = HttpClient(f"http://127.0.0.1:{unused_port()}/x", timeout=5)
    outcomes = client.send_many([(b"x", HEADERS)] * 3)
    assert [type(o) for o in outcomes] == [ConnectionRefusedError] * 3
    assert client.connections == 0


def test_a_repeated_response_head_parsed_once_still_answers_each_request_with_its_own() -> None:
    # Pipelined answers: the same head again and again (parsed once), then a rate limit, then the first head
    # again; each response has its own body and status, the connection is kept throughout.
    def reply(request: Request) -> Reply:
        number = int(request.body)
        if number == 5:
            return Reply(429, {"Retry-After": "7", "X-Sentry-Rate-Limits": "7:transaction"}, b"limited")
        return Reply(200, {"X-Same": "yes"}, b'{"id":"%d"}' % number)

    with RecordingServer(reply) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        outcomes = [client.send(b"%d" % i, HEADERS) for i in range(3)]
        outcomes += client.send_many([(b"%d" % i, HEADERS) for i in range(3, 9)])
        server.wait_for(9)
    assert all(isinstance(o, Response) for o in outcomes)
    responses = [o for o in outcomes if isinstance(o, Response)]
    assert [r.status for r in responses] == [200] * 5 + [429] + [200] * 3
    assert [r.body for r in responses] == [b'{"id":"%d"}' % i if i != 5 else b"limited" for i in range(9)]
    assert responses[5].headers["x-sentry-rate-limits"] == "7:transaction"
    assert all(r.headers.get("x-same") == "yes" for i, r in enumerate(responses) if i != 5)
    assert server.connections == client.connections == 1


def test_a_negative_content_length_is_a_protocol_error() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"
    with RecordingServer(lambda r: Reply(raw=raw)) as server:
        client = HttpClient(server.url + "/x", timeout=5)
        with pytest.raises(ProtocolError, match="Content-Length"):
            client.send(b"x", HEADERS)
