"""``serve`` exposed safely: bearer tokens, per-token services, TLS and mutual TLS, with the real
OTLPSpanExporter (``headers=``, ``certificate_file=``, client certificates) and the judging Sentry receiver."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from bridge.cli import serve
from bridge.errors import ConfigError
from bridge.receiver.auth import TokenFile, parse_tokens
from bridge.receiver.settings import ServeSettings, exposure_warnings
from tests.peers.sentry import SentryReceiver
from tests.serve_support import encode, finished_spans
from tests.serve_support import serving as shared_serving
from tests.tls_support import Pki, make_pki

CHECKOUT_TOKEN = "checkout-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-fedcba9876543210"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.txt"
    # whitespace, a Windows line end, blank lines and comments around the tokens are ignored
    path.write_text(f"# who may send\n\n   {CHECKOUT_TOKEN}   checkout checkout-*  \r\n\t{ADMIN_TOKEN}\n  \n")
    return path


def serving(environ: dict[str, str], **given: Any) -> Any:
    """``serve`` in a thread (tests.serve_support.serving), roots sent without waiting for late children."""
    return shared_serving(environ, **{"root_delay": "0", **given})


def request_span(tracer: trace_api.Tracer) -> None:
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={"http.route": "/cart"}):
        pass


def export(url: str, service: str, **exporter_options: Any) -> str:
    """One span of ``service`` through the real OTLPSpanExporter; the export result's name."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter_options.setdefault("timeout", 10)
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", **exporter_options)
    results: list[str] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            results.append(exporter.export([span]).name)

    provider.add_span_processor(Recording(exporter))
    request_span(provider.get_tracer("shop"))
    provider.shutdown()
    return results[0]


def post(url: str, body: bytes, headers: dict[str, str], context: Optional[ssl.SSLContext] = None) -> Any:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
    connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf", **headers})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer.status, dict(answer.getheaders()), data


def body_of(service: str) -> bytes:
    return bytes(encode(finished_spans(request_span, {"service.name": service})).SerializeToString())


# -- the token file --------------------------------------------------------------------------------------


def test_token_file_ignores_whitespace_blank_lines_and_comments(token_file: Path) -> None:
    tokens = TokenFile(str(token_file))
    assert len(tokens) == 2
    checkout = tokens.sender(CHECKOUT_TOKEN)
    assert checkout is not None and checkout.services == ("checkout", "checkout-*")
    assert checkout.name == "token on line 3"
    admin = tokens.sender(ADMIN_TOKEN)
    assert admin is not None and admin.services is None
    assert tokens.sender(CHECKOUT_TOKEN[:-1]) is None and tokens.sender("") is None and tokens.sender(None) is None
    assert checkout.may_send_for("checkout-eu") and not checkout.may_send_for("billing")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no token"),
        ("# only a comment\n\n", "no token"),
        ("short\n", "shorter than 16"),
        ("this-token-has-a-quote\"0123456\n", "letters, digits"),
        (f"{CHECKOUT_TOKEN}\n{CHECKOUT_TOKEN} billing\n", "same token as on line 1"),
    ],
)
def test_bad_token_files_name_the_file_and_line_never_the_token(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tokens(text, "--bearer-token-file tokens.txt")
    assert problem in str(caught.value) and "tokens.txt" in str(caught.value)
    assert CHECKOUT_TOKEN not in str(caught.value) and "this-token" not in str(caught.value)


def test_an_unreadable_token_file_stops_serve_from_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope" / "tokens.txt"
    stop = threading.Event()
    stop.set()
    code = serve(
        {"listen": "127.0.0.1:0", "bearer_token_file": str(missing)},
        stop,
        environ={"SENTRY_DSN": "https://key@sentry.invalid/1"},
        ready=lambda url: pytest.fail("serve started without its token file"),
    )
    assert code == 2
    assert f"--bearer-token-file='{missing}'" in capsys.readouterr().err


def test_reload_keeps_the_old_tokens_when_the_file_became_unusable(token_file: Path) -> None:
    tokens = TokenFile(str(token_file))
    token_file.write_text("new-token-000000000000000000\n")
    assert tokens.reload()
    assert tokens.sender("new-token-000000000000000000") is not None and tokens.sender(ADMIN_TOKEN) is None
    token_file.write_text("\n# nothing\n")
    assert not tokens.reload()
    token_file.unlink()
    assert not tokens.reload()
    assert tokens.sender("new-token-000000000000000000") is not None


# -- authentication over HTTP ----------------------------------------------------------------------------


def test_without_a_valid_token_401_and_nothing_reaches_sentry(
    token_file: Path, sentry_receiver: SentryReceiver
) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}, bearer_token_file=str(token_file)) as url:
        assert export(url, "checkout") == "FAILURE"
        assert export(url, "checkout", headers={"Authorization": "Bearer wrong-token-000000000000"}) == "FAILURE"
        assert export(url, "checkout", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}) == "FAILURE"
        status, headers, _ = post(url, b"\xff not even protobuf", {})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert headers["Connection"] == "close"
        # the same server takes a sender with a token: the one transaction in Sentry is that one
        assert export(url, "checkout", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) == "SUCCESS"
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
        health = json_get(url, "/health")
    assert transaction["tags"]["service.name"] == "checkout"
    assert len(sentry_receiver.received) == 1
    assert health["security"]["refused"]["unauthorized"] == 4


def json_get(url: str, path: str, headers: Optional[dict[str, str]] = None) -> Any:
    import json

    host, port = url.split("://", 1)[1].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers=headers or {})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return json.loads(data) if answer.status == 200 else answer.status


def test_a_token_limited_to_checkout_cannot_create_events_for_billing(
    token_file: Path, sentry_receiver: SentryReceiver
) -> None:
    with serving({"SENTRY_DSN": sentry_receiver.dsn}, bearer_token_file=str(token_file)) as url:
        status, _, data = post(url, body_of("billing"), {"Authorization": f"Bearer {CHECKOUT_TOKEN}"})
        response = ExportTraceServiceResponse()
        response.ParseFromString(data)
        assert status == 200 and response.partial_success.rejected_spans == 1
        assert "may not send for service.name 'billing'" in response.partial_success.error_message
        assert CHECKOUT_TOKEN not in response.partial_success.error_message
        assert export(url, "checkout-eu", headers={"Authorization": f"Bearer {CHECKOUT_TOKEN}"}) == "SUCCESS"
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
        health = json_get(url, "/health")
    assert transaction["tags"]["service.name"] == "checkout-eu"
    assert {t["tags"]["service.name"] for t in sentry_receiver.transactions()} == {"checkout-eu"}
    assert health["security"]["refused"]["service_not_allowed"] == 1


def test_health_is_open_unless_a_health_token_is_set(token_file: Path, tmp_path: Path) -> None:
    environ = {"SENTRY_DSN": "https://key@sentry.invalid/1"}
    with serving(environ, bearer_token_file=str(token_file)) as url:
        assert json_get(url, "/health")["status"] == "ok"
    health_tokens = tmp_path / "health.txt"
    health_tokens.write_text("health-token-00000000000000\n")
    with serving(environ, bearer_token_file=str(token_file), health_token=str(health_tokens)) as url:
        assert json_get(url, "/health") == 401
        assert json_get(url, "/health", {"Authorization": "Bearer health-token-00000000000000"})["status"] == "ok"


# -- TLS -------------------------------------------------------------------------------------------------


def test_valid_token_over_mutual_tls_becomes_sentry_events(
    pki: Pki, token_file: Path, sentry_receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over the exporter's certificate_file (its issue #3829)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_client_ca": str(pki.ca)}
    with serving({"SENTRY_DSN": sentry_receiver.dsn}, bearer_token_file=str(token_file), **tls) as url:
        assert url.startswith("https://")
        client = {"client_certificate_file": str(pki.client_cert), "client_key_file": str(pki.client_key)}
        auth = {"Authorization": f"Bearer {CHECKOUT_TOKEN}"}
        assert export(url, "checkout", headers=auth, certificate_file=str(pki.ca), **client) == "SUCCESS"
        [transaction] = sentry_receiver.wait_for_items("transaction", 1)
        # no client certificate, or one from another CA: the handshake fails, nothing is exported
        # (the exporter retries a failed handshake as transient until its timeout: keep that short)
        assert export(url, "checkout", headers=auth, certificate_file=str(pki.ca), timeout=1) == "FAILURE"
        stranger = {"client_certificate_file": str(pki.other_client_cert), "client_key_file": str(pki.other_client_key)}
        assert export(url, "checkout", headers=auth, certificate_file=str(pki.ca), timeout=1, **stranger) == "FAILURE"
    assert transaction["transaction"] == "GET /cart"
    assert len(sentry_receiver.transactions()) == 1


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_is_1_2_or_newer(pki: Pki) -> None:
    environ = {"SENTRY_DSN": "https://key@sentry.invalid/1"}
    with serving(environ, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as url:
        host, port = url.removeprefix("https://").rsplit(":", 1)
        for newest, works in ((ssl.TLSVersion.TLSv1_1, False), (ssl.TLSVersion.TLSv1_2, True)):
            context = ssl.create_default_context(cafile=str(pki.ca))
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = newest
            try:
                context.set_ciphers("ALL:@SECLEVEL=0")
            except ssl.SSLError:
                pass
            try:
                with socket.create_connection((host, int(port)), timeout=10) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
                        assert wrapped.version() == "TLSv1.2"
                        negotiated = True
            except ssl.SSLError:
                negotiated = False
            assert negotiated is works, newest


def test_bad_tls_files_name_the_setting(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    environ = {"SENTRY_DSN": "https://key@sentry.invalid/1"}
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"tls_cert": str(tmp_path / "missing.pem")}, "--tls-cert="),
        ({"tls_cert": str(garbage)}, "--tls-cert="),
        ({"tls_cert": str(pki.server_cert), "tls_key": str(pki.client_key)}, "--tls-cert/--tls-key="),
        ({"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_client_ca": str(garbage)},
         "--tls-client-ca="),
        ({"tls_key": str(pki.server_key)}, "--tls-key="),
    ]
    for given, setting in cases:
        code = serve({"listen": "127.0.0.1:0", **given}, stop, environ=environ, ready=lambda url: pytest.fail("ran"))
        assert code == 2
        assert setting in capsys.readouterr().err, given


# -- exposure ---------------------------------------------------------------------------------------------


def test_exposed_listener_without_authentication_is_warned_about(token_file: Path, pki: Pki) -> None:
    loopback = ServeSettings.from_environ({}, listen="127.0.0.1:4318")
    assert exposure_warnings(loopback) == []
    exposed = ServeSettings.from_environ({}, listen="0.0.0.0:4318")
    assert [w.split(" without ")[1].split(":")[0] for w in exposure_warnings(exposed)] == ["authentication", "TLS"]
    secured = ServeSettings.from_environ(
        {}, listen="0.0.0.0:4318", bearer_token_file=str(token_file), tls_cert=str(pki.server_cert)
    )
    assert exposure_warnings(secured) == []



# -- collector-config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gateway-tier2-sampler.yaml", "single-node.yaml"])
def test_the_collector_exporter_to_serve_carries_a_token_serve_accepts(name: str, token_file: Path) -> None:
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "collector-config" / name).read_text())
    headers = config["exporters"]["otlphttp/bridge"]["headers"]
    resolved = {
        key: value.replace("${env:BRIDGE_SERVE_TOKEN:-none}", ADMIN_TOKEN) for key, value in headers.items()
    }  # as the Collector resolves it with BRIDGE_SERVE_TOKEN set
    with serving({"SENTRY_DSN": "https://key@sentry.invalid/1"}, bearer_token_file=str(token_file)) as url:
        assert post(url, body_of("shop"), resolved)[0] == 200
        assert post(url, body_of("shop"), {k: v.replace(ADMIN_TOKEN, "none") for k, v in resolved.items()})[0] == 401


def test_a_huge_token_file_is_refused_not_cut(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text((CHECKOUT_TOKEN + "\n") * 40_000)
    with pytest.raises(ConfigError, match="larger than"):
        TokenFile(str(huge))


def test_tokens_and_bodies_are_never_logged(token_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    canary = "canary-attribute-value-0123"

    def canary_span(tracer: trace_api.Tracer) -> None:
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes={"secret": canary}):
            pass

    body = bytes(encode(finished_spans(canary_span, {"service.name": "billing"})).SerializeToString())
    caplog.set_level("DEBUG")
    with serving({"SENTRY_DSN": "https://key@sentry.invalid/1"}, bearer_token_file=str(token_file)) as url:
        assert post(url, body, {"Authorization": "Bearer wrong-token-but-long-enough"})[0] == 401
        assert post(url, body, {"Authorization": f"Bearer {CHECKOUT_TOKEN}"})[0] == 200  # billing: rejected
        assert post(url, b"\x00broken" + canary.encode(), {"Authorization": f"Bearer {ADMIN_TOKEN}"})[0] == 400
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "listening on" in logged  # the capture works
    for secret in (canary, CHECKOUT_TOKEN, ADMIN_TOKEN, "wrong-token-but-long-enough", "key@sentry"):
        assert secret not in logged, secret


def log_request_body(service: str) -> bytes:
    """An OTLP logs request: one exception record of ``service`` (the shape OpenTelemetry SDKs send)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    record = resource_logs.scope_logs.add().log_records.add()
    record.time_unix_nano = record.observed_time_unix_nano = 1_700_000_000_000_000_000
    record.severity_number = 17
    record.event_name = "exception"
    for key, value in (("exception.type", "ValueError"), ("exception.message", "card declined")):
        record.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return bytes(request.SerializeToString())


def test_a_token_limited_to_checkout_cannot_create_log_errors_for_billing(
    token_file: Path, sentry_receiver: SentryReceiver
) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    def post_logs(url: str, service: str) -> tuple[int, ExportLogsServiceResponse]:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {CHECKOUT_TOKEN}"}
        connection.request("POST", "/v1/logs", log_request_body(service), headers)
        answer = connection.getresponse()
        response = ExportLogsServiceResponse()
        response.ParseFromString(answer.read())
        connection.close()
        return answer.status, response

    with serving({"SENTRY_DSN": sentry_receiver.dsn}, bearer_token_file=str(token_file)) as url:
        status, response = post_logs(url, "billing")
        assert status == 200 and response.partial_success.rejected_log_records == 1
        assert "may not send for service.name 'billing'" in response.partial_success.error_message
        assert post(url.replace("/v1/traces", ""), b"", {})[0] == 401  # and /v1/traces still needs a token
        status, response = post_logs(url, "checkout")
        assert status == 200 and response.partial_success.rejected_log_records == 0
        [error] = sentry_receiver.wait_for_items("event", 1)
    assert error["tags"]["service.name"] == "checkout"
    assert len(sentry_receiver.events()) == 1
