"""What may leave the process: unit rules, then canaries through OpenTelemetry's WSGI middleware into the
serialized envelopes (absent by default, present with send_default_pii; bodies never)."""
from __future__ import annotations

from typing import Any

import pytest

from bridge.sentry.convert import ConvertOptions, error_events, transaction_event
from bridge.sentry.privacy import (
    FILTERED,
    MAX_VALUE_CHARS,
    SENSITIVE_ATTRIBUTE_KEYS,
    filter_attributes,
    is_sensitive_header,
    scrub_query,
    scrub_url,
)
from tests.convert_support import Recorder, sent, wsgi_client


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Cookie", True), ("cookie", True), ("Authorization", True), ("Proxy-Authorization", True),
        ("X-Api-Key", True), ("x_api_key", True), ("X-Forwarded-For", True), ("x_real_ip", True),
        ("Set-Cookie", True), ("X-Auth-Token", True), ("X-CSRF-Token", True), ("X-Session-Id", True),
        ("Content-Type", False), ("User-Agent", False), ("Accept", False), ("X-Request-Id", False),
    ],
)  # fmt: skip
def test_is_sensitive_header(name: str, sensitive: bool) -> None:
    assert is_sensitive_header(name) is sensitive


@pytest.mark.parametrize(
    ("query", "scrubbed"),
    [
        ("a=1&password=x", "a=1&password=[Filtered]"),
        ("PassWord=x&passwd=y", "PassWord=[Filtered]&passwd=[Filtered]"),
        ("access_token=1&client_secret=2&api_key=3&apikey=4&api-key=5", "access_token=[Filtered]&client_secret="
         "[Filtered]&api_key=[Filtered]&apikey=[Filtered]&api-key=[Filtered]"),
        ("sessionid=1&auth=2&credentials=3", "sessionid=[Filtered]&auth=[Filtered]&credentials=[Filtered]"),
        ("pass%77ord=x&q=1", "pass%77ord=[Filtered]&q=1"),  # names are matched decoded
        ("q=password+reset&page=2", "q=password+reset&page=2"),  # values are not names
        ("flag&x=", "flag&x="),
        ("", ""),
    ],
)  # fmt: skip
def test_scrub_query(query: str, scrubbed: str) -> None:
    assert scrub_query(query) == scrubbed


def test_scrub_url() -> None:
    assert scrub_url("https://ann:pw@h.example:8443/p?token=1&a=2#f") == "https://h.example:8443/p?token=[Filtered]&a=2#f"
    assert scrub_url("https://h.example/p") == "https://h.example/p"


def test_filter_attributes() -> None:
    attributes = {
        "client.address": "203.0.113.1",
        "net.peer.ip": "203.0.113.1",
        "http.request.header.cookie": ("a=1", "b=2"),
        "http.request.header.authorization": "Bearer x",
        "http.response.header.set_cookie": ("s=1",),
        "http.request.header.accept": ("*/*",),
        "url.full": "https://u:p@h/x?token=t&q=1",
        "http.url": "https://h/x?password=p",
        "http.target": "/x?api_key=k&q=1",
        "url.query": "secret=s",
        "db.password": "hunter2",
        "app.session_ids": ["s1", "s2"],
        "gen_ai.usage.input_tokens": 12,
        "sentry.tag.session": "kept: user-chosen",
        "long": "z" * (MAX_VALUE_CHARS + 10),
    }
    assert filter_attributes(attributes, False) == {
        "http.request.header.cookie": [FILTERED, FILTERED],
        "http.request.header.authorization": FILTERED,
        "http.response.header.set_cookie": [FILTERED],
        "http.request.header.accept": ("*/*",),
        "url.full": "https://h/x?token=[Filtered]&q=1",
        "http.url": "https://h/x?password=[Filtered]",
        "http.target": "/x?api_key=[Filtered]&q=1",
        "url.query": "secret=[Filtered]",
        "db.password": FILTERED,
        "app.session_ids": [FILTERED, FILTERED],
        "gen_ai.usage.input_tokens": 12,
        "sentry.tag.session": "kept: user-chosen",
        "long": "z" * MAX_VALUE_CHARS,
    }
    assert not SENSITIVE_ATTRIBUTE_KEYS & filter_attributes(attributes, False).keys()
    assert filter_attributes(attributes, True) == {**attributes, "long": "z" * MAX_VALUE_CHARS}
    assert filter_attributes(None, False) == {}


# The crashing app comes before the canaries: its frames' source context must not quote them.
def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    environ["wsgi.input"].read()
    if environ["PATH_INFO"] == "/crash":
        raise RuntimeError("crashed")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", SET_COOKIE)])
    return [b"ok"]



REQUEST_HEADERS = {
    "Cookie": "sid=CANARY-COOKIE",
    "Authorization": "Bearer CANARY-AUTH",
    "Proxy-Authorization": "Basic CANARY-PROXY",
    "X-Api-Key": "CANARY-APIKEY",
    "X-Forwarded-For": "198.51.100.77",
    "X-Real-IP": "198.51.100.78",
    "X-Auth-Token": "CANARY-XAUTH",
    "User-Agent": "visible-agent/1.0",
}
CLIENT_IP = "203.0.113.99"
CANARIES = [
    "CANARY-COOKIE", "CANARY-AUTH", "CANARY-PROXY", "CANARY-APIKEY", "198.51.100.77", "198.51.100.78",
    "CANARY-XAUTH", "CANARY-SETCOOKIE", "CANARY-PW", "CANARY-QKEY", CLIENT_IP,
]  # fmt: skip
BODY = "CANARY-BODY"
SET_COOKIE = "session=CANARY-SETCOOKIE"


@pytest.mark.parametrize("mode", [None, "http", "http/dup"])
@pytest.mark.parametrize("pii", [False, True])
def test_canaries_reach_sentry_only_with_send_default_pii(
    mode: str | None, pii: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ",".join(REQUEST_HEADERS))
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", "Set-Cookie,Content-Type")
    options = ConvertOptions(send_default_pii=pii)
    envelopes = []
    for path in ("/ok", "/crash"):
        recorder = Recorder()
        client = wsgi_client(_app, recorder, mode)
        try:
            client.post(
                f"{path}?password=CANARY-PW&api_key=CANARY-QKEY&q=visible",
                headers=REQUEST_HEADERS,
                data=BODY,
                environ_overrides={"REMOTE_ADDR": CLIENT_IP},
            )
        except RuntimeError:
            assert path == "/crash"
        root = recorder.root()
        transaction = transaction_event(root, [], options)
        envelopes.append(sent(transaction, options))
        for event in error_events(root, transaction["transaction"], options):
            envelopes.append(sent(event, options))
    assert len(envelopes) == 3  # two transactions and the crash
    everything = b"\n".join(envelopes)
    assert BODY.encode() not in everything
    assert b"visible-agent/1.0" in everything and b"q=visible" in everything
    for canary in CANARIES:
        assert (canary.encode() in everything) is pii, canary
    if pii:
        assert transaction["user"] == {"ip_address": "198.51.100.77"}  # X-Forwarded-For first, as sentry-sdk
        assert transaction["request"]["env"]["REMOTE_ADDR"] == CLIENT_IP
        assert transaction["request"]["headers"]["Cookie"] == "sid=CANARY-COOKIE"
    else:
        headers = transaction["request"]["headers"]
        assert headers["Cookie"] == headers["Authorization"] == headers["X-Forwarded-For"] == FILTERED
        assert headers["User-Agent"] == "visible-agent/1.0"
        assert "user" not in transaction and "REMOTE_ADDR" not in transaction["request"]["env"]


def test_long_strings_in_sequences_are_capped_too() -> None:
    """Captured headers are lists: a 1 MB header made a transaction Sentry refuses (over 1 MiB)."""
    huge = "x" * (MAX_VALUE_CHARS * 100)
    for pii in (False, True):
        capped = filter_attributes({"http.request.header.x_huge": [huge, 7], "custom": (huge,)}, pii)
        assert capped == {"http.request.header.x_huge": [huge[:MAX_VALUE_CHARS], 7], "custom": [huge[:MAX_VALUE_CHARS]]}
