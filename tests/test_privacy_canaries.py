"""Privacy over everything sent: canaries in Cookie, Authorization, X-Api-Key, X-Forwarded-For, REMOTE_ADDR,
``?password=`` and ``?token=``, the request body and Set-Cookie, with header capture lists naming those
headers. With the defaults, no canary is in any OTLP body or any Sentry envelope (a byte search over
every request the receivers got, decompressed). With ``send_default_pii=True`` the Sentry side carries
what sentry-sdk's own ``SentryWsgiMiddleware`` sends for the same requests (run in a process of its own).
The capture sanitize list (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS``) is honoured on
both legs in both modes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

import bridge
from tests import privacy_support as support
from tests.httpserver import RecordingServer, decompress
from tests.judges import assert_valid_envelope
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

ROOT = Path(__file__).resolve().parents[1]
REDACTED = "[REDACTED]"


def everything_sent(otlp: OtlpReceiver, sentry: SentryReceiver) -> bytes:
    bodies = [decompress(r.body, r.headers.get("content-encoding", "")) for r in otlp.requests + sentry.requests]
    return b"\n".join(bodies)


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"
    monkeypatch.setenv(prefix + "SERVER_REQUEST", support.CAPTURED)
    monkeypatch.setenv(prefix + "SERVER_RESPONSE", "Set-Cookie,Content-Type")
    monkeypatch.setenv(prefix + "SANITIZE_FIELDS", "x-secret.*")


def served_through_the_bridge(
    otlp: OtlpReceiver, sentry: SentryReceiver, pii: bool, mode: Optional[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if mode:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", mode)
    bridge.init(otlp_endpoint=otlp.endpoint, dsn=sentry.dsn, send_default_pii=pii, otlp_compression="gzip")
    support.serve(bridge.BridgeMiddleware(support.app))
    assert bridge.flush(10)
    assert len(otlp.spans()) == 2 and len(sentry.transactions()) == 2 and len(sentry.events()) == 1


@pytest.mark.parametrize("mode", [None, "http/dup"])
def test_with_the_defaults_no_canary_leaves_the_process(
    mode: Optional[str],
    capture: None,
    otlp_receiver: OtlpReceiver,
    sentry_receiver: SentryReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served_through_the_bridge(otlp_receiver, sentry_receiver, False, mode, monkeypatch)
    sent = everything_sent(otlp_receiver, sentry_receiver)
    for canary in support.CANARIES:
        assert canary.encode() not in sent, canary
    assert b"visible-agent/1.0" in sent and b"page=visible" in sent  # what is not private still goes
    # Captured headers keep their name; the sanitize list's pattern gives [REDACTED], private ones are masked.
    span = otlp_receiver.spans()[0]
    assert span.attributes["http.request.header.x_secret_token"] == [REDACTED]
    assert span.attributes["http.request.header.cookie"] == [REDACTED]
    assert span.attributes["http.response.header.set_cookie"] == [REDACTED]
    [error] = sentry_receiver.events()
    headers = error["request"]["headers"]
    # Every request header, as sentry-sdk shows them (the private ones masked, checked byte by byte above).
    assert {"Cookie", "Authorization", "X-Api-Key", "X-Forwarded-For", "X-Secret-Token", "User-Agent", "Host"} <= set(
        headers
    )
    assert "ip_address" not in error.get("user", {}) and "REMOTE_ADDR" not in error["request"].get("env", {})


def sentry_sdk_events(tmp_path: Path) -> list[dict[str, Any]]:
    """What sentry-sdk (send_default_pii=True) sends for the same requests: its events and transactions."""
    with RecordingServer() as server:
        subprocess.run(
            [sys.executable, "-m", "tests.privacy_support", f"http://publickey@127.0.0.1:{server.port}/1"],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            check=True,
            timeout=60,
        )
        received = list(server.requests)
    items = [item for r in received for item in assert_valid_envelope(r.body, r.headers.get("content-encoding", ""))]
    return [payload for kind, payload in items if kind in ("event", "transaction")]


def private_parts(event: dict[str, Any]) -> dict[str, Any]:
    """Where the canaries can be in an event: which headers, cookies, IPs, query and body it carries."""
    request = event.get("request", {})
    headers = {name.lower() for name in request.get("headers", {})}
    return {
        "headers": sorted(headers & {h.lower() for h in support.REQUEST_HEADERS}),
        "cookies": bool(request.get("cookies")),
        "query_string": request.get("query_string"),
        "body": "data" in request,
        "remote_addr": request.get("env", {}).get("REMOTE_ADDR"),
        "user_ip": event.get("user", {}).get("ip_address"),
    }


def by_kind(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``"transaction ok"``, ``"event crash"``...: each event by its type and path."""
    return {e.get("type", "event") + " " + e["request"]["url"].rsplit("/", 1)[1]: e for e in events}


def test_with_send_default_pii_sentry_gets_what_sentry_sdk_sends(
    capture: None,
    otlp_receiver: OtlpReceiver,
    sentry_receiver: SentryReceiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    served_through_the_bridge(otlp_receiver, sentry_receiver, True, None, monkeypatch)
    theirs = sentry_sdk_events(tmp_path)
    ours = sentry_receiver.events() + sentry_receiver.transactions()
    assert sorted(e.get("type", "event") for e in theirs) == ["event", "transaction", "transaction"]
    theirs_by, ours_by = by_kind(theirs), by_kind(ours)
    assert set(theirs_by) == set(ours_by)
    for key, event in theirs_by.items():
        assert private_parts(ours_by[key]) == private_parts(event), key
    # Neither sends the body; the canaries of headers, query and IP are there (the sanitize list aside).
    sent = everything_sent(otlp_receiver, sentry_receiver)
    assert support.BODY.encode() not in sent
    for canary in set(support.CANARIES) - {support.BODY, support.C + "-xsecret"}:
        assert canary.encode() in sent, canary
    assert otlp_receiver.spans()[0].attributes["http.request.header.x_secret_token"] == [REDACTED]
