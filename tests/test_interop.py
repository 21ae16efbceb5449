"""Trace interop with real sentry-sdk processes over real HTTP: one trace, one frozen DSC, across both SDKs.

- a sentry-sdk client calls a bridge-wrapped app: the bridge continues its trace (sentry-trace + baggage)
  and its envelopes carry the client's DSC unchanged;
- the bridge-wrapped app calls a sentry-sdk server through OTel's requests instrumentation: the server
  continues the bridge's trace, with the bridge's decision and DSC;
- every envelope's DSC agrees with the sampling decision (sample_rand < sample_rate iff sampled).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor

import bridge
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.zero_code_support import Program, program_env

CLIENT = """
import sys, urllib.request
import sentry_sdk

sentry_sdk.init(dsn=sys.argv[1], traces_sample_rate=1.0, release="web@1.2.3", environment="staging")
with sentry_sdk.start_transaction(name="client checkout", op="task", source="custom"):
    urllib.request.urlopen(sys.argv[2], timeout=30).read()
sentry_sdk.flush(10)
"""

DOWNSTREAM = """
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server
import sentry_sdk
from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

# Rate 0: whatever it does with this trace, it does because the bridge (its parent) said so.
sentry_sdk.init(dsn=sys.argv[1], traces_sample_rate=0.0, release="downstream@1", environment="downstream")

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"downstream"]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, SentryWsgiMiddleware(app), handler_class=Quiet)
print("PORT", server.server_port, flush=True)
server.handle_request()
sentry_sdk.flush(10)
"""


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom in the bridge app")
    if environ["PATH_INFO"] == "/call":
        requests.get(environ["QUERY_STRING"], timeout=30).close()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bridge"]


@pytest.fixture
def bridge_app(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> Iterator[str]:
    """A bridge-wrapped app on a real loopback HTTP server, with OTel's requests instrumentation."""
    bridge.init(
        otlp_endpoint=otlp_receiver.endpoint,
        dsn=sentry_receiver.dsn,
        service_name="bridge-app",
        environment="bridge-env",
        release="bridge@2",
    )
    RequestsInstrumentor().instrument()
    server: WSGIServer = make_server("127.0.0.1", 0, bridge.BridgeMiddleware(_app), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        RequestsInstrumentor().uninstrument()


def envelope_dsc(receiver: SentryReceiver, kind: str, name: str) -> dict[str, str]:
    """The DSC (envelope header ``trace``) of the envelope holding the ``kind`` item named ``name``."""
    for received in receiver.received:
        if any(t == kind and payload.get("transaction") == name for t, payload in received.items):
            return dict(json.loads(received.request.data.partition(b"\n")[0])["trace"])
    raise AssertionError(f"no {kind} {name!r}; got {[r.items for r in receiver.received]}")


def transaction(receiver: SentryReceiver, name: str) -> dict[str, Any]:
    (found,) = [event for event in receiver.transactions() if event["transaction"] == name]
    return found


def test_a_sentry_sdk_client_continues_into_the_bridge(
    bridge_app: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    argv = [sys.executable, "-c", CLIENT, sentry_receiver.dsn, f"{bridge_app}/hello"]
    client = subprocess.run(argv, env=program_env(), capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    assert bridge.flush(10)

    sent = transaction(sentry_receiver, "client checkout")
    (http_span,) = [span for span in sent["spans"] if span["op"] == "http.client"]
    (server,) = [span for span in otlp_receiver.spans() if span.kind == "SERVER"]
    assert server.trace_id == sent["contexts"]["trace"]["trace_id"]  # one trace across both SDKs
    assert server.parent_span_id == http_span["span_id"] and server.parent_is_remote
    ours = transaction(sentry_receiver, "GET /hello")
    assert ours["contexts"]["trace"]["parent_span_id"] == http_span["span_id"]
    assert ours["environment"] == "bridge-env"  # the events are ours...
    theirs, mine = envelope_dsc(sentry_receiver, "transaction", "client checkout"), envelope_dsc(
        sentry_receiver, "transaction", "GET /hello"
    )
    assert mine == theirs  # ...the DSC is the head's, unchanged
    assert mine["environment"] == "staging" and mine["release"] == "web@1.2.3"
    assert mine["transaction"] == "client checkout" and mine["sampled"] == "true"


def test_the_bridge_continues_into_a_sentry_sdk_server(
    bridge_app: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    downstream = Program([sys.executable, "-c", DOWNSTREAM, sentry_receiver.dsn], program_env(), r"PORT (\d+)")
    try:
        with urllib.request.urlopen(f"{bridge_app}/call?http://127.0.0.1:{downstream.match.group(1)}/", timeout=30):
            pass
        downstream.process.wait(60)
    finally:
        downstream.stop()
    assert bridge.flush(10)

    spans = otlp_receiver.spans()
    (server,) = [span for span in spans if span.kind == "SERVER"]
    (client,) = [span for span in spans if span.kind == "CLIENT"]
    (theirs,) = [event for event in sentry_receiver.transactions() if event["release"] == "downstream@1"]
    assert theirs["contexts"]["trace"]["trace_id"] == server.trace_id == client.trace_id
    assert theirs["contexts"]["trace"]["parent_span_id"] == client.span_id  # sentry-sdk read our sentry-trace
    their_dsc = envelope_dsc(sentry_receiver, "transaction", theirs["transaction"])
    our_dsc = envelope_dsc(sentry_receiver, "transaction", "GET /call")
    assert their_dsc == our_dsc  # it froze the DSC the bridge stated as head
    assert our_dsc["public_key"] == "publickey" and our_dsc["environment"] == "bridge-env"
    assert our_dsc["release"] == "bridge@2" and our_dsc["trace_id"] == server.trace_id
    assert our_dsc["sampled"] == "true" and float(our_dsc["sample_rand"]) < float(our_dsc["sample_rate"])


INCOMING = [
    {},  # this service is the head
    {"sentry-trace": "771a43a4192642f0b136d5159a50170a-b7ad6b7169203331"},  # deferred, no baggage: decide here
    {  # deferred with the browser's sample_rand: decide by it (0.3 < 0.5)
        "sentry-trace": "771a43a4192642f0b136d5159a50170b-b7ad6b7169203331",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a50170b,sentry-public_key=browser,sentry-sample_rand=0.3",
    },
    {  # decided upstream: not sampled at 0.3, without a sample_rand: one is filled in, consistent
        "sentry-trace": "771a43a4192642f0b136d5159a50170c-b7ad6b7169203331-0",
        "baggage": "sentry-trace_id=771a43a4192642f0b136d5159a50170c,sentry-public_key=browser,"
        "sentry-sample_rate=0.3,sentry-sampled=false",
    },
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"},  # W3C decided: sampled
    {"traceparent": "00-0af7651916cd43dd8448eb211c80319d-00f067aa0ba902b7-00"},  # W3C decided: not sampled
]


def test_every_envelope_states_a_dsc_consistent_with_its_decision(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, traces_sample_rate=0.5)
    server = make_server("127.0.0.1", 0, bridge.BridgeMiddleware(_app), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        for headers in INCOMING + [{}] * 30:
            request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/boom", headers=headers)
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert bridge.flush(10)
    errors = sentry_receiver.events()
    assert len(errors) == len(INCOMING) + 30
    decisions = {"true": 0, "false": 0}
    for received in sentry_receiver.received:
        dsc = json.loads(received.request.data.partition(b"\n")[0])["trace"]
        decisions[dsc["sampled"]] += 1
        rand, rate = float(dsc["sample_rand"]), float(dsc["sample_rate"])
        assert 0.0 <= rand < 1.0
        if dsc["public_key"] == "publickey":  # ours (a browser's may have fewer digits: it is kept as sent)
            assert len(dsc["sample_rand"].split(".")[1]) == 6
        assert (rand < rate) is (dsc["sampled"] == "true"), dsc
        kinds = [kind for kind, _ in received.items]
        if "transaction" in kinds:
            assert dsc["sampled"] == "true"
    assert decisions["true"] and decisions["false"]  # both kinds of decision were exercised
    continued = envelope_dsc_of_trace(sentry_receiver, "771a43a4192642f0b136d5159a50170b")
    assert continued["public_key"] == "browser" and continued["sample_rand"] == "0.3"
    assert continued["sampled"] == "true" and continued["sample_rate"] == "0.5"  # our decision, our rate
    decided = envelope_dsc_of_trace(sentry_receiver, "771a43a4192642f0b136d5159a50170c")
    assert decided["sampled"] == "false" and decided["public_key"] == "browser" and decided["sample_rate"] == "0.3"
    assert float(decided["sample_rand"]) >= 0.3  # filled in, consistent with the upstream's decision


def envelope_dsc_of_trace(receiver: SentryReceiver, trace_id: str) -> dict[str, str]:
    for received in receiver.received:
        dsc = json.loads(received.request.data.partition(b"\n")[0])["trace"]
        if dsc["trace_id"] == trace_id:
            return dict(dsc)
    raise AssertionError(f"no envelope for trace {trace_id}")
