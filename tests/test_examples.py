"""End to end: every example app, served over real HTTP, against the real exporters and real receivers.

Each example has the same four routes (a path parameter, a chained exception, a handled error with a
tag, a streaming response); ``drive_example`` sends them plus a 404, and the assertions read both sides.
OTLP: names are route templates, never raw paths; the failing route has ERROR status and one exception
event with the chained cause; the handled error is a not-escaped event with its tag; the streaming span
covers the last chunk. Sentry: every envelope passes Relay's normalizer; one transaction per request,
named by route with source ``route``; exactly two errors, linked to their spans, and stored by a real
Bugsink with the example's own frames in app.
"""

from __future__ import annotations

import importlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bridge
from tests.examples_driver import Results, collect, drive_example, send, served
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver, SpanView
from tests.peers.sentry import SentryReceiver


@dataclass(frozen=True)
class Example:
    name: str
    module: str  # imported when a test needs it (Django's settings are process-wide)
    attribute: str
    view: str = "report"  # the function that handles /reports/<id>
    views: str = ""  # the module of the example's own frames (default: ``module``)

    @property
    def views_module(self) -> str:
        return self.views or self.module

    @property
    def source(self) -> str:
        """The file whose frames must show in the failing route's stack trace."""
        return self.views_module.replace(".", "/") + ".py"

    def application(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attribute)

    def init(self, **options: Any) -> bridge.Bridge:
        """The example's own bridge configuration where it has one (Django's before_send), else init()."""
        if self.name == "django":
            from examples.django_project.observability import init_bridge

            return init_bridge(**options)
        return bridge.init(service_name=f"{self.name}-example", **options)


EXAMPLES = {
    example.name: example
    for example in (
        Example("wsgi", "examples.wsgi_app", "application"),
        Example("flask", "examples.flask_app", "app"),
        Example("django", "examples.django_project.wsgi", "application", views="examples.django_project.views"),
        Example("bottle", "examples.bottle_app", "application"),
        Example("pyramid", "examples.pyramid_app", "application"),
        Example("falcon", "examples.falcon_app", "application", view="on_get"),
    )
}


@pytest.fixture(params=sorted(EXAMPLES))
def example(request: pytest.FixtureRequest) -> Example:
    return EXAMPLES[request.param]


def drive(example: Example, receiver: OtlpReceiver, **options: Any) -> Results:
    application = example.application()  # first: importing Django's wsgi.py runs its own init_bridge()
    example.init(otlp_endpoint=receiver.endpoint, **options)
    return drive_example(application, receiver)


def assert_otlp_side(results: Results, example: Example) -> None:
    replies, spans = results.replies, results.spans
    assert sorted(spans) == sorted(replies), "one server span per request"
    assert len(results.all_spans) == len(replies)

    assert (replies["/users/7"].status, replies["/users/7"].body) == (200, b"user 7\n")
    users = spans["/users/7"]
    assert users.name == "GET /users/{user_id}"
    assert users.attributes["http.route"] == "/users/{user_id}"
    assert (users.status, users.events) == ("UNSET", [])

    assert replies["/reports/42"].status == 500
    report = spans["/reports/42"]
    assert report.name == "GET /reports/{report_id}"
    assert report.attributes["http.route"] == "/reports/{report_id}"
    assert report.status == "ERROR"
    assert report.attributes["error.type"] == "RuntimeError"
    assert report.attributes["http.response.status_code"] == 500
    [(name, event)] = report.events
    assert name == "exception"
    assert event["exception.type"] == "RuntimeError"
    assert event["exception.message"] == "report 42 could not be built"
    assert event["exception.escaped"] == "True"
    stack = event["exception.stacktrace"]
    assert "KeyError: 'quarterly'" in stack
    assert "The above exception was the direct cause of the following exception" in stack
    assert f'{example.source}", line' in stack  # the example's own frames, down to where it raised
    assert "in build_report\n" in stack and "in load_template\n" in stack

    assert replies["/checkout"].status == 402
    checkout = spans["/checkout"]
    assert checkout.name == "GET /checkout"
    assert checkout.status == "UNSET"  # handled: the request itself did not fail
    assert checkout.attributes["sentry.tag.checkout.step"] == "payment"
    [(name, event)] = checkout.events
    assert (name, event["exception.type"], event["exception.escaped"]) == ("exception", "ValueError", "False")
    assert event["exception.message"] == "card declined for 42 EUR"
    assert "in charge_card\n" in event["exception.stacktrace"]

    reply = replies["/stream"]
    assert reply.status == 200
    ticks = [int(line.split()[2]) for line in reply.body.decode().splitlines()]
    assert len(ticks) == 3
    stream = spans["/stream"]
    assert stream.name == "GET /stream"
    start, end = stream.start_time_unix_nano, stream.end_time_unix_nano
    assert start <= ticks[0] and ticks[-1] <= end  # the span covers the body, not just the call

    assert replies["/nope"].status == 404
    nope = spans["/nope"]
    assert (nope.status, nope.events) == ("UNSET", [])
    assert "http.route" not in nope.attributes
    assert "{" not in nope.name  # no route matched: the middleware's default name


ROUTED = ("GET /users/{user_id}", "GET /reports/{report_id}", "GET /checkout", "GET /stream")


def in_app_frames(value: dict[str, Any]) -> list[dict[str, Any]]:
    return [frame for frame in value["stacktrace"]["frames"] if frame.get("in_app")]


def event_id_of(span: SpanView) -> str:
    [(_, event)] = span.events
    return str(event["sentry.event_id"])


def assert_report_error(error: dict[str, Any], results: Results, example: Example) -> None:
    """The failing route's Sentry error, as sent or as stored: chained, unhandled, the example's frames."""
    span = results.spans["/reports/42"]
    assert error["event_id"].replace("-", "") == event_id_of(span)
    assert error["contexts"]["trace"]["trace_id"] == span.trace_id
    assert error["contexts"]["trace"]["span_id"] == span.span_id
    assert error["transaction"] == "GET /reports/{report_id}"
    cause, raised = error["exception"]["values"]
    assert (cause["type"], cause["value"]) == ("KeyError", "'quarterly'")
    assert (raised["type"], raised["value"]) == ("RuntimeError", "report 42 could not be built")
    assert raised["mechanism"]["handled"] is False
    in_app = in_app_frames(raised)
    assert {(frame["module"], frame["filename"]) for frame in in_app} == {(example.views_module, example.source)}
    assert [frame["function"] for frame in in_app][-2:] == [example.view, "build_report"]
    assert in_app[-1]["context_line"].strip().startswith("raise RuntimeError(")
    assert [frame["function"] for frame in in_app_frames(cause)][-2:] == ["build_report", "load_template"]
    assert in_app_frames(cause)[-1]["context_line"].strip().startswith("return TEMPLATES[name]")
    others = [frame for frame in raised["stacktrace"]["frames"] if not frame.get("in_app")]
    assert others, "the framework's (or the bridge's) own frames are there too, not in app"
    assert not any(frame.get("module", "").startswith("examples.") for frame in others)


def assert_checkout_error(error: dict[str, Any], results: Results, example: Example) -> None:
    span = results.spans["/checkout"]
    assert error["event_id"].replace("-", "") == event_id_of(span)
    assert error["contexts"]["trace"]["trace_id"] == span.trace_id
    [value] = error["exception"]["values"]
    assert (value["type"], value["value"]) == ("ValueError", "card declined for 42 EUR")
    assert value["mechanism"]["handled"] is True
    assert [frame["function"] for frame in in_app_frames(value)][-1] == "charge_card"
    tags = error["tags"]
    assert (dict(tags) if isinstance(tags, list) else tags)["checkout.step"] == "payment"


def assert_sentry_side(results: Results, sentry: SentryReceiver, example: Example) -> None:
    assert sentry.problems == []  # every envelope passed sentry-sdk's parser and Relay's normalizer
    transactions = {t["transaction"]: t for t in sentry.transactions()}
    assert sorted(transactions) == sorted([*ROUTED, "GET /nope"])
    for name in ROUTED:
        assert transactions[name]["transaction_info"] == {"source": "route"}
    assert transactions["GET /nope"]["transaction_info"] == {"source": "url"}
    assert transactions["GET /reports/{report_id}"]["contexts"]["trace"]["status"] == "internal_error"
    errors = {e["transaction"]: e for e in sentry.events()}
    assert sorted(errors) == ["GET /checkout", "GET /reports/{report_id}"]
    assert_report_error(errors["GET /reports/{report_id}"], results, example)
    assert_checkout_error(errors["GET /checkout"], results, example)


def test_both_sides(example: Example, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    results = drive(example, otlp_receiver, dsn=sentry_receiver.dsn)
    assert_otlp_side(results, example)
    assert {s.resource["service.name"] for s in results.all_spans} == {f"{example.name}-example"}
    assert_sentry_side(results, sentry_receiver, example)
    # The HTTP server metrics: one duration measurement per request, under the route its span names.
    points = otlp_receiver.latest_points("http.server.request.duration")
    assert sum(point.count or 0 for point in points) == len(results.replies)
    routes = {span.attributes.get("http.route") for span in results.spans.values()} - {None}
    assert len(routes) == 4, routes  # the four routes of every example
    assert {point.attributes.get("http.route") for point in points} - {None} == routes


def test_errors_stored_by_bugsink(example: Example, otlp_receiver: OtlpReceiver, bugsink: Bugsink) -> None:
    dsn, project_id = bugsink.new_project(f"example-{example.name}")
    results = drive(example, otlp_receiver, dsn=dsn)
    stored = [event["data"] for event in bugsink.wait_for_events(2, project_id=project_id)]
    assert len(stored) == 2
    by_type = {event["exception"]["values"][-1]["type"]: event for event in stored}
    assert_report_error(by_type["RuntimeError"], results, example)
    assert_checkout_error(by_type["ValueError"], results, example)


# -- Django specifics ---------------------------------------------------------------------------------


def test_django_request_finished_fires_for_every_request(otlp_receiver: OtlpReceiver) -> None:
    from django.core.signals import request_finished

    example = EXAMPLES["django"]
    application = example.application()
    example.init(otlp_endpoint=otlp_receiver.endpoint)
    finished: list[object] = []

    def count(sender: object, **kwargs: Any) -> None:
        finished.append(sender)

    request_finished.connect(count)
    try:
        requests = [*_DJANGO_REQUESTS, ("/users/8", {"Host": "probe.invalid"})]
        results = drive_example(application, otlp_receiver, requests)
    finally:
        request_finished.disconnect(count)
    assert len(finished) == len(requests)
    assert len(results.all_spans) == len(requests)


_DJANGO_REQUESTS = [("/users/7", {}), ("/reports/42", {}), ("/checkout", {}), ("/stream", {}), ("/nope", {})]


def test_django_captures_errors_with_debug_off(otlp_receiver: OtlpReceiver) -> None:
    example = EXAMPLES["django"]
    application = example.application()
    from django.conf import settings

    assert settings.DEBUG is False
    example.init(otlp_endpoint=otlp_receiver.endpoint)
    results = drive_example(application, otlp_receiver, [("/reports/42", {})])
    [(_, event)] = results.spans["/reports/42"].events
    assert event["exception.type"] == "RuntimeError"


def test_django_host_header_probe_is_a_400_without_a_sentry_error(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    example = EXAMPLES["django"]
    application = example.application()
    example.init(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    results = drive_example(application, otlp_receiver, [("/users/7", {"Host": "probe.invalid"})])
    assert results.replies["/users/7"].status == 400
    probe = results.spans["/users/7"]
    assert probe.attributes["http.response.status_code"] == 400
    assert (probe.status, probe.events) == ("UNSET", [])  # Django answered it; no failure recorded
    [transaction] = sentry_receiver.transactions()
    assert transaction["contexts"]["trace"]["trace_id"] == probe.trace_id
    assert sentry_receiver.events() == []
    assert sentry_receiver.problems == []


def test_django_before_send_drops_disallowed_host_even_when_captured(sentry_receiver: SentryReceiver) -> None:
    """The example's ``before_send`` (the seeds' filter), wired by its own ``init_bridge()``: a
    DisallowedHost that some code captures anyway is dropped and counted; a real bug still goes."""
    from django.core.exceptions import DisallowedHost

    from examples.django_project.observability import init_bridge

    EXAMPLES["django"].application()  # Django set up; its wsgi.py's own init_bridge() has run
    init_bridge(dsn=sentry_receiver.dsn, exporters="sentry")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        for exc in (DisallowedHost("Invalid HTTP_HOST header: 'probe.invalid'."), RuntimeError("a real bug")):
            try:
                raise exc
            except Exception:
                bridge.capture_exception()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with served(bridge.BridgeMiddleware(app)) as port:
        send(port, [("/", {})])
    assert bridge.flush(5)
    [event] = sentry_receiver.events()
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    lost = [
        (item["reason"], item["category"], item["quantity"])
        for report in sentry_receiver.client_reports()
        for item in report["discarded_events"]
    ]
    assert lost == [("before_send", "error", 1)]


# -- a real production server -------------------------------------------------------------------------


GUNICORN_TARGETS = [("flask", "examples.flask_app:app"), ("django", "examples.django_project.wsgi")]


@pytest.mark.parametrize(("name", "target"), GUNICORN_TARGETS)
def test_example_under_gunicorn(
    name: str, target: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    """``gunicorn TARGET`` as documented: the bridge is configured from the environment in the worker
    (Flask: by the middleware on the first request; Django: by wsgi.py), and the worker's exit flushes."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_SERVICE_NAME": f"{name}-example",
        "SENTRY_DSN": sentry_receiver.dsn,
    }
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--workers", "1"]
    command += ["--bind", "127.0.0.1:0", target]
    server = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            log.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        port = 0
        while not port:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", lines.get(timeout=20))
            port = int(found.group(1)) if found else 0
        replies = send(port)  # the master listens; the worker accepts once it has booted
    finally:
        server.send_signal(signal.SIGTERM)  # graceful: the worker exits normally; the bridge's at-exit flush runs
        status = server.wait(20)
        reader.join(5)
    assert status == 0, "".join(log)
    results = collect(replies, otlp_receiver)
    assert_otlp_side(results, EXAMPLES[name])
    assert {s.resource["service.name"] for s in results.all_spans} == {f"{name}-example"}
    assert_sentry_side(results, sentry_receiver, EXAMPLES[name])
