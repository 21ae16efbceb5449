"""The Sentry leg end to end: a wrapped WSGI app → spans → envelopes → a receiver that judges each one
with sentry-sdk's parser and Relay's normalizer (and, where marked, a real Bugsink)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from typing import Any, Callable

import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import bridge
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

Environ = dict[str, Any]


def load_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    return {"name": settings["name"]}


def failing_view(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    try:
        load_settings()
    except KeyError as exc:
        raise RuntimeError("could not load settings") from exc
    return []  # pragma: no cover


def ok_view(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def handled_view(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    bridge.set_tag("plan", "gold")
    bridge.set_user({"id": "u-1", "email": "u1@example.com"})
    try:
        int("x")
    except ValueError:
        bridge.capture_exception()
    bridge.capture_message("quota almost used", level="warning")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"handled"]


def router(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    views = {"/boom": failing_view, "/handled": handled_view}
    return views.get(environ["PATH_INFO"], ok_view)(environ, start_response)


def drive(*paths: str, **headers: str) -> None:
    # use_cookies=False: werkzeug's cookie jar would otherwise replace a Cookie header given here
    client = Client(LintMiddleware(bridge.BridgeMiddleware(router)), use_cookies=False)
    for path in paths:
        try:
            client.get(path, headers=headers, buffered=True)
        except RuntimeError:
            pass


@pytest.fixture
def both(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> tuple[OtlpReceiver, SentryReceiver]:
    bridge.init(
        otlp_endpoint=otlp_receiver.endpoint,
        dsn=sentry_receiver.dsn,
        service_name="leg-tests",
        environment="test",
        release="leg@1.0",
    )
    return otlp_receiver, sentry_receiver


def discarded(reports: list[dict[str, Any]], reason: str, category: str) -> int:
    """How many items the client reports say were discarded for ``reason`` in ``category``."""
    return sum(
        d["quantity"]
        for report in reports
        for d in report["discarded_events"]
        if d["reason"] == reason and d["category"] == category
    )


def in_app_frames(exception_value: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in exception_value["stacktrace"]["frames"] if f.get("in_app")]


def test_a_failing_request_becomes_a_transaction_and_a_linked_error(
    both: tuple[OtlpReceiver, SentryReceiver],
) -> None:
    otlp, sentry = both
    drive("/boom")
    assert bridge.flush(5)
    [span] = otlp.spans()
    [transaction] = sentry.transactions()
    [error] = sentry.events()

    assert transaction["transaction"] == "GET /boom"
    assert transaction["transaction_info"] == {"source": "url"}
    assert transaction["contexts"]["trace"]["trace_id"] == span.trace_id
    assert transaction["contexts"]["trace"]["span_id"] == span.span_id
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert transaction["environment"] == "test" and transaction["release"] == "leg@1.0"

    assert error["level"] == "error"
    assert error["transaction"] == "GET /boom"
    assert error["contexts"]["trace"]["trace_id"] == span.trace_id
    assert error["contexts"]["trace"]["span_id"] == span.span_id
    [(_, exception_event)] = span.events
    assert error["event_id"] == exception_event["sentry.event_id"]
    cause, raised = error["exception"]["values"]
    assert (cause["type"], cause["value"]) == ("KeyError", "'name'")
    assert (raised["type"], raised["value"]) == ("RuntimeError", "could not load settings")
    assert raised["mechanism"]["type"] == "wsgi" and raised["mechanism"]["handled"] is False
    assert cause["mechanism"]["source"] == "__cause__"
    assert [f["function"] for f in in_app_frames(raised)] == ["router", "failing_view"]
    view_frame = in_app_frames(raised)[-1]
    assert view_frame["module"] == failing_view.__module__
    bridge_frames = [f for f in raised["stacktrace"]["frames"] if f.get("module", "").startswith("bridge.")]
    assert bridge_frames and not any(f["in_app"] for f in bridge_frames)
    assert view_frame["context_line"].strip() == 'raise RuntimeError("could not load settings") from exc'
    assert len(view_frame["pre_context"]) == 5
    assert [f["function"] for f in in_app_frames(cause)] == ["failing_view", "load_settings"]

    [header] = [json.loads(r.data.partition(b"\n")[0]) for r in sentry.requests if b'"type":"event"' in r.data]
    dsc = header["trace"]
    assert dsc["trace_id"] == span.trace_id
    assert dsc["public_key"] == "publickey" or dsc["public_key"] in sentry.dsn
    assert dsc["environment"] == "test" and dsc["release"] == "leg@1.0"
    assert "transaction" not in dsc  # a url-sourced name is high-cardinality; Sentry's SDKs leave it out
    assert dsc["sampled"] == "true"


def test_handled_errors_messages_tags_and_user(both: tuple[OtlpReceiver, SentryReceiver]) -> None:
    _, sentry = both
    drive("/handled")
    assert bridge.flush(5)
    events = sentry.events()
    [error] = [e for e in events if "exception" in e]
    [message] = [e for e in events if "exception" not in e]
    [value] = error["exception"]["values"]
    assert value["type"] == "ValueError"
    assert value["mechanism"]["handled"] is True
    assert error["tags"]["plan"] == "gold"
    assert error["user"]["id"] == "u-1"
    assert message["level"] == "warning"
    assert message["logentry"]["formatted"] == "quota almost used" or message["logentry"]["message"] == (
        "quota almost used"
    )
    [transaction] = sentry.transactions()
    assert transaction["tags"]["plan"] == "gold"
    assert transaction["contexts"]["trace"]["status"] == "ok"


def test_errors_are_sent_when_the_trace_is_not_sampled(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, traces_sample_rate=0.0)
    drive("/ok", "/boom", "/handled")
    assert bridge.flush(5)
    assert otlp_receiver.spans() == []
    assert sentry_receiver.transactions() == []
    events = sentry_receiver.events()
    assert len(events) == 3  # the escaped error, the handled one, the message
    raised = next(e for e in events if e.get("exception") and e["exception"]["values"][-1]["type"] == "RuntimeError")
    assert len(raised["exception"]["values"]) == 2
    assert len(raised["contexts"]["trace"]["trace_id"]) == 32
    assert raised["transaction"] == "GET /boom"
    handled = next(e for e in events if e.get("exception") and e["exception"]["values"][-1]["type"] == "ValueError")
    assert handled["tags"]["plan"] == "gold"


def test_before_send_drops_and_is_counted(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        exc_type, exc, _ = hint["exc_info"]
        return None if isinstance(exc, RuntimeError) else event

    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, before_send=before_send)
    drive("/boom", "/handled")
    assert bridge.flush(5)
    bridge.shutdown()  # sends what is left to report
    kinds = [e["exception"]["values"][-1]["type"] for e in sentry_receiver.events() if "exception" in e]
    assert kinds == ["ValueError"]
    assert discarded(sentry_receiver.client_reports(), "before_send", "error") == 1


def test_sentry_only_exporter(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, exporters=["sentry"])
    drive("/ok")
    assert bridge.flush(5)
    assert otlp_receiver.requests == []
    assert len(sentry_receiver.transactions()) == 1


def test_privacy_by_default_and_send_default_pii(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    canaries = {"Cookie": "sid=CANARY-COOKIE", "Authorization": "Bearer CANARY-AUTH", "X-Forwarded-For": "198.51.100.7"}
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    drive("/boom?password=CANARY-PW&page=1", **canaries)
    assert bridge.flush(5)
    sent = b"".join(gzip.decompress(r.body) if r.body[:2] == b"\x1f\x8b" else r.body for r in sentry_receiver.requests)
    for canary in (b"CANARY-COOKIE", b"CANARY-AUTH", b"198.51.100.7", b"CANARY-PW"):
        assert canary not in sent
    [error] = sentry_receiver.events()
    assert error["request"]["method"] == "GET"
    assert "password=" in error["request"]["query_string"] and "page=1" in error["request"]["query_string"]


@pytest.mark.bugsink
def test_errors_land_in_bugsink_linked_to_the_otlp_trace(otlp_receiver: OtlpReceiver, bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("leg-e2e")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=dsn, service_name="bugsink-e2e")
    drive("/boom")
    assert bridge.flush(5)
    [span] = otlp_receiver.spans()
    [stored] = bugsink.wait_for_events(1, project_id=project_id)
    data = stored["data"]
    cause, raised = data["exception"]["values"]
    assert (raised["type"], raised["value"]) == ("RuntimeError", "could not load settings")
    assert (cause["type"], cause["value"]) == ("KeyError", "'name'")
    view_frame = in_app_frames(raised)[-1]
    assert view_frame["function"] == "failing_view"
    assert "could not load settings" in view_frame["context_line"]
    assert data["contexts"]["trace"]["trace_id"] == span.trace_id


@pytest.mark.bugsink
def test_bugsinks_rate_limit_stops_transactions_but_not_errors(otlp_receiver: OtlpReceiver, bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project("leg-rate-limit")
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=dsn)
    drive("/ok")
    assert bridge.flush(5)  # Bugsink answers: X-Sentry-Rate-Limits: 86400:transaction;span:organization
    drive("/ok", "/ok", "/ok", "/boom")
    assert bridge.flush(5)
    bridge.shutdown()
    assert len(otlp_receiver.spans()) == 5  # the OTLP leg is untouched
    items = [_items(raw) for raw in bugsink.raw_envelopes(project_id)]
    kinds = [kind for envelope in items for kind, _ in envelope]
    assert kinds.count("transaction") == 1
    assert kinds.count("event") == 1
    reports = [report for envelope in items for kind, report in envelope if kind == "client_report"]
    assert discarded(reports, "ratelimit_backoff", "transaction") == 4
    [stored] = bugsink.wait_for_events(1, project_id=project_id)
    assert stored["data"]["exception"]["values"][-1]["type"] == "RuntimeError"


def _items(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    lines = raw.split(b"\n")
    out = []
    index = 1
    while index + 1 < len(lines):
        header = json.loads(lines[index])
        out.append((header["type"], json.loads(lines[index + 1])))
        index += 2
    return out


def test_sample_rate_zero_sends_no_errors_and_counts_them(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, sample_rate=0.0)
    drive("/boom", "/boom")
    assert bridge.flush(5)
    bridge.shutdown()
    assert sentry_receiver.events() == []
    assert len(sentry_receiver.transactions()) == 2  # transactions follow the traces sampler, not sample_rate
    assert discarded(sentry_receiver.client_reports(), "sample_rate", "error") == 2


def test_send_default_pii_sends_what_sentry_sdk_would(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, send_default_pii=True)
    client = Client(LintMiddleware(bridge.BridgeMiddleware(router)), use_cookies=False)
    with pytest.raises(RuntimeError):
        client.get("/boom?token=T1", headers={"Cookie": "sid=C1"}, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert bridge.flush(5)
    [error] = sentry_receiver.events()
    assert "token=T1" in error["request"]["query_string"]
    assert error["user"]["ip_address"] == "192.0.2.9"


def test_a_hung_sentry_never_touches_requests_or_the_otlp_leg(otlp_receiver: OtlpReceiver) -> None:
    from tests.httpserver import RecordingServer, Reply

    with RecordingServer(lambda request: Reply(hang=True)) as hung:
        bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=f"http://key@127.0.0.1:{hung.port}/1")
        client = Client(LintMiddleware(bridge.BridgeMiddleware(router)))
        for _ in range(20):
            assert client.get("/ok", buffered=True).data == b"ok"
        assert bridge.flush(1.0) is False  # the Sentry leg cannot drain...
        assert len(otlp_receiver.spans()) == 20  # ...but every span went out over OTLP
        bridge.shutdown(timeout=0.5)


def test_a_replaced_configuration_is_released(sentry_receiver: SentryReceiver) -> None:
    import gc
    import weakref

    first = bridge.init(dsn=sentry_receiver.dsn, exporters=["sentry"])
    leg = weakref.ref(first.sentry)
    bridge.init(dsn=sentry_receiver.dsn, exporters=["sentry"])
    del first
    gc.collect()
    assert leg() is None  # nothing (a fork hook, a global) keeps the old leg and its queue alive


def test_event_ids_ignore_the_apps_random_seed() -> None:
    import random

    from bridge.sentry.context import event_id

    random.seed(42)
    first = event_id()
    random.seed(42)
    assert event_id() != first  # an app seeding the global generator cannot make Sentry event ids repeat


@pytest.mark.parametrize("sampled", [True, False])
def test_error_events_carry_the_requests_headers_masked(
    sampled: bool, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    """As sentry-sdk's middleware shows them: every header, private ones masked; none captured for OTLP."""
    bridge.init(
        otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, traces_sample_rate=1.0 if sampled else 0.0
    )
    drive("/boom", **{"Accept": "text/html", "Referer": "https://shop.example/cart", "Cookie": "sid=SECRET-C"})
    drive("/handled", **{"X-Request-Id": "r-42", "Authorization": "Bearer SECRET-A"})
    assert bridge.flush(5)
    boom = next(e for e in sentry_receiver.events() if e["transaction"] == "GET /boom")
    headers = boom["request"]["headers"]
    assert headers["Accept"] == "text/html"
    assert headers["Referer"] == "https://shop.example/cart"
    assert headers["Cookie"] == "[Filtered]"
    for event in sentry_receiver.events():
        if event["transaction"] == "GET /handled":  # the handled error and the message
            assert event["request"]["headers"]["X-Request-Id"] == "r-42"
            assert event["request"]["headers"]["Authorization"] == "[Filtered]"
    sent = b"".join(r.data for r in sentry_receiver.requests)
    assert b"SECRET-C" not in sent and b"SECRET-A" not in sent
    for span in otlp_receiver.spans():  # OTLP carries only the headers its capture lists name
        assert not any(key.startswith("http.request.header.") for key in span.attributes)


def test_send_default_pii_sends_the_private_headers_too(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    bridge.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn, send_default_pii=True)
    drive("/boom", Cookie="sid=C1")
    assert bridge.flush(5)
    [error] = sentry_receiver.events()
    assert error["request"]["headers"]["Cookie"] == "sid=C1"
