"""Error and message events: exceptions recorded on real spans (from the live object and from the
stack-trace text), chains, exception groups, source context, handled or not, unsampled requests, size."""
from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode

from bridge.sentry import frames
from bridge.sentry.convert import ConvertOptions, error_events, exception_event, message_event
from bridge.sentry.envelope import dumps
from tests.convert_support import Recorder, sent, wsgi_client

OPTIONS = ConvertOptions(project_root=os.getcwd())
HERE = os.path.abspath(__file__)


def lookup(table: dict[str, Any], key: str) -> Any:
    return table[key]  # raises KeyError


def load_config() -> None:
    try:
        lookup({}, "db")
    except KeyError as exc:
        raise RuntimeError("config missing") from exc


def cleanup_fails() -> None:
    try:
        lookup({}, "x")
    except KeyError:
        raise ValueError("cleanup failed")  # noqa: B904 (an implicit __context__ on purpose)


def cleanup_quietly() -> None:
    try:
        lookup({}, "x")
    except KeyError:
        raise ValueError("clean") from None


def line_of(function: Callable[..., Any], text: str) -> int:
    lines, first = inspect.getsourcelines(function)
    (index,) = [i for i, line in enumerate(lines) if text in line]
    return first + index


def caught(function: Callable[[], None]) -> BaseException:
    try:
        function()
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


def recorded(function: Callable[[], None], resource: dict[str, Any] | None = None, **record: Any) -> tuple[Any, Any]:
    """(finished span, exception) for ``function``'s exception recorded on a span."""
    recorder = Recorder(resource)
    exc = caught(function)
    with recorder.tracer.start_as_current_span("work") as span:
        span.record_exception(exc, **record)
    return recorder.root(), exc


def in_app_frames(value: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    return [
        (frame["function"], frame["module"], frame["lineno"], frame["context_line"])
        for frame in value["stacktrace"]["frames"]
        if frame["in_app"]
    ]


@pytest.mark.parametrize("path", ["object", "text"])
def test_cause_chain_oldest_first_with_frames_and_source_context(path: str) -> None:
    span, exc = recorded(load_config)
    (event,) = error_events(span, "GET /config", OPTIONS, {0: exc} if path == "object" else None)
    sent(event)
    assert event["level"] == "error" and event["transaction"] == "GET /config"
    assert event["contexts"]["trace"]["span_id"] == f"{span.context.span_id:016x}"
    older, newer = event["exception"]["values"]
    assert (older["type"], older.get("module"), older["value"]) == ("KeyError", None, "'db'")
    assert (newer["type"], newer.get("module"), newer["value"]) == ("RuntimeError", None, "config missing")
    assert newer["mechanism"] == {"type": "generic", "handled": True, "exception_id": 0}
    assert older["mechanism"] == {
        "type": "chained", "handled": True, "exception_id": 1, "parent_id": 0, "source": "__cause__"
    }  # fmt: skip
    raise_line = line_of(lookup, "return table[key]")
    assert in_app_frames(older) == [
        ("load_config", __name__, line_of(load_config, 'lookup({}, "db")'), '        lookup({}, "db")'),
        ("lookup", __name__, raise_line, "    return table[key]  # raises KeyError"),
    ]
    assert in_app_frames(newer) == [
        ("caught", __name__, line_of(caught, "function()"), "        function()"),
        ("load_config", __name__, line_of(load_config, "raise RuntimeError"),
         '        raise RuntimeError("config missing") from exc'),
    ]  # fmt: skip
    top = older["stacktrace"]["frames"][-1]
    with open(HERE) as file:
        source = file.read().splitlines()
    assert top["pre_context"] == source[raise_line - 6 : raise_line - 1]
    assert top["post_context"] == source[raise_line : raise_line + 5]
    assert top["abs_path"] == HERE and top["filename"] == __name__.replace(".", "/") + ".py"


@pytest.mark.parametrize("path", ["object", "text"])
def test_context_chain_and_suppressed_context(path: str) -> None:
    span, exc = recorded(cleanup_fails)
    (event,) = error_events(span, None, OPTIONS, {0: exc} if path == "object" else None)
    sent(event)
    older, newer = event["exception"]["values"]
    assert (older["type"], newer["type"], newer["value"]) == ("KeyError", "ValueError", "cleanup failed")
    assert older["mechanism"]["source"] == "__context__" and older["mechanism"]["parent_id"] == 0
    assert "transaction" not in event

    span, exc = recorded(cleanup_quietly)
    (event,) = error_events(span, None, OPTIONS, {0: exc} if path == "object" else None)
    sent(event)
    (only,) = event["exception"]["values"]
    assert (only["type"], only["value"]) == ("ValueError", "clean")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups")
def test_exception_group_members_are_linked_to_the_group() -> None:
    def fan_out() -> None:
        errors = [caught(load_config), caught(lambda: lookup({}, "b"))]
        raise ExceptionGroup("two failed", errors)  # type: ignore[name-defined]  # noqa: F821

    exc = caught(fan_out)
    event = exception_event(
        exc, trace_id=1, span_id=2, parent_span_id=None, transaction=None, handled=True,
        attributes=None, resource=None, options=OPTIONS,
    )  # fmt: skip
    sent(event)
    values = event["exception"]["values"]
    assert [v["type"] for v in values] == ["KeyError", "KeyError", "RuntimeError", "ExceptionGroup"]
    group = values[-1]["mechanism"]
    assert group["is_exception_group"] is True and group["exception_id"] == 0
    by_id = {v["mechanism"]["exception_id"]: v for v in values}
    assert by_id[1]["type"] == "RuntimeError" and by_id[1]["mechanism"]["source"] == "exceptions[0]"
    assert by_id[2]["mechanism"] | {} == {
        "type": "chained", "handled": True, "exception_id": 2, "parent_id": 1, "source": "__cause__"
    }  # fmt: skip
    assert by_id[3]["mechanism"]["parent_id"] == 0 and by_id[3]["mechanism"]["source"] == "exceptions[1]"


def test_handled_or_not() -> None:
    # Recorded by hand: handled.
    span, _ = recorded(load_config)
    (event,) = error_events(span, None, OPTIONS)
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is True
    # exception.escaped true (the SDK's `with span:` on an exception): not handled.
    span, _ = recorded(load_config, escaped=True)
    (event,) = error_events(span, None, OPTIONS)
    assert event["exception"]["values"][-1]["mechanism"] == {"type": "wsgi", "handled": False, "exception_id": 0}
    assert event["exception"]["values"][0]["mechanism"]["handled"] is False
    sent(event)

    # use_span records escaped=False but ends the span in ERROR "Type: message": not handled either.
    recorder = Recorder()
    with pytest.raises(RuntimeError), recorder.tracer.start_as_current_span("job"):
        load_config()
    (event,) = error_events(recorder.root(), None, OPTIONS)
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False

    # Caught, recorded, then the span fails for another reason: handled.
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("job") as job:
        job.record_exception(caught(load_config))
        job.set_status(Status(StatusCode.ERROR, "upstream said no"))
    (event,) = error_events(recorder.root(), None, OPTIONS)
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is True


def _crash(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    load_config()
    return []


@pytest.mark.parametrize("mode", [None, "http"])
def test_exception_escaping_otels_wsgi_middleware(mode: str | None) -> None:
    recorder = Recorder()
    client = wsgi_client(_crash, recorder, mode)
    with pytest.raises(RuntimeError):
        client.get("/config?token=abc")
    root = recorder.root()
    (event,) = error_events(root, "GET /config", OPTIONS)
    sent(event)
    newer = event["exception"]["values"][-1]
    assert newer["mechanism"] == {"type": "wsgi", "handled": False, "exception_id": 0}
    assert event["contexts"]["trace"]["op"] == "http.server"
    assert event["request"]["url"] == "http://localhost/config"
    assert event["request"]["query_string"] == "token=[Filtered]"
    modules = [frame.get("module") or "" for frame in newer["stacktrace"]["frames"]]
    in_app = [frame["in_app"] for frame in newer["stacktrace"]["frames"]]
    assert modules[-1] == __name__ and in_app[-1] is True
    # werkzeug and OpenTelemetry (site-packages) are not the app.
    assert any(m.startswith("opentelemetry.") for m in modules)
    assert all(not app for m, app in zip(modules, in_app) if m.startswith(("opentelemetry.", "werkzeug.")))


def test_received_java_exception_without_parser() -> None:
    resource = {"telemetry.sdk.language": "java", "service.name": "billing"}
    recorder = Recorder(resource)
    with recorder.tracer.start_as_current_span("charge") as span:
        span.add_event(
            "exception",
            {
                "exception.type": "java.lang.IllegalStateException",
                "exception.message": "card declined",
                "exception.stacktrace": "java.lang.IllegalStateException: card declined\n\tat B.charge(B.java:42)",
                "exception.escaped": True,
            },
        )
    (event,) = error_events(recorder.root(), None, OPTIONS)
    sent(event)
    (value,) = event["exception"]["values"]
    assert (value["module"], value["type"], value["value"]) == ("java.lang", "IllegalStateException", "card declined")
    assert value["mechanism"] == {"type": "otel", "handled": False, "exception_id": 0}
    assert event["platform"] == "java" and event["tags"]["service.name"] == "billing"


def test_exception_event_attributes_without_type() -> None:
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("x") as span:
        span.add_event("exception", {"exception.message": "it broke"})
        span.add_event("exception", {})
        span.add_event("unrelated", {"a": 1})
    first, second = error_events(recorder.root(), None, OPTIONS)
    for event in (first, second):
        sent(event)
    assert first["exception"]["values"] == [
        {"value": "it broke", "mechanism": {"type": "generic", "handled": True, "exception_id": 0}}
    ]
    assert second["exception"]["values"][0]["type"] == "Error"


def test_message_events_from_span_events() -> None:
    recorder = Recorder()
    with recorder.tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={"http.method": "GET"}) as s:
        s.add_event("sentry.message", {"sentry.message.text": "cache cold", "sentry.message.level": "warn"})
        s.add_event("sentry.message", {"sentry.message.text": "odd", "sentry.message.level": "loud"})
    warning, odd = error_events(recorder.root(), "GET /x", OPTIONS)
    for event in (warning, odd):
        sent(event)
        assert "exception" not in event and event["transaction"] == "GET /x"
    assert (warning["level"], warning["logentry"]) == ("warning", {"formatted": "cache cold"})
    assert odd["level"] == "info"


def test_unsampled_request_exception_and_message() -> None:
    attributes = {
        "http.request.method": "POST", "url.scheme": "https", "server.address": "shop.example", "server.port": 443,
        "url.path": "/pay", "http.route": "/pay", "enduser.id": "u1",
    }  # fmt: skip
    resource = {"service.name": "shop", "service.version": "2.1", "telemetry.sdk.language": "python"}
    exc = caught(load_config)
    event = exception_event(
        exc, trace_id=0xAB, span_id=0xCD, parent_span_id=0xEF, transaction="POST /pay", handled=False,
        attributes=attributes, resource=resource, options=OPTIONS,
    )  # fmt: skip
    sent(event, OPTIONS, resource=resource)
    assert event["contexts"]["trace"] == {
        "trace_id": f"{0xAB:032x}", "span_id": f"{0xCD:016x}", "parent_span_id": f"{0xEF:016x}",
        "op": "http.server", "status": "internal_error",
    }  # fmt: skip
    assert event["request"]["url"] == "https://shop.example/pay" and event["request"]["method"] == "POST"
    assert (event["release"], event["user"], event["tags"]) == ("2.1", {"id": "u1"}, {"service.name": "shop"})
    assert event["exception"]["values"][-1]["mechanism"] == {"type": "wsgi", "handled": False, "exception_id": 0}
    assert event["exception"]["values"][0]["stacktrace"]["frames"][-1]["context_line"].strip().startswith("return")

    message = message_event(
        "slow payment", "warning", trace_id=0xAB, span_id=0xCD, parent_span_id=None, transaction="POST /pay",
        attributes=attributes, resource=resource, options=OPTIONS,
    )  # fmt: skip
    sent(message, OPTIONS, resource=resource)
    assert (message["level"], message["logentry"]["formatted"]) == ("warning", "slow payment")
    assert message["contexts"]["trace"]["trace_id"] == event["contexts"]["trace"]["trace_id"]
    assert "parent_span_id" not in message["contexts"]["trace"]


def test_deep_recursion_keeps_both_ends_of_the_stack() -> None:
    def recurse(depth: int) -> int:
        return recurse(depth + 1) + 1

    exc = caught(lambda: recurse(0))
    assert isinstance(exc, RecursionError)
    event = exception_event(
        exc, trace_id=1, span_id=1, parent_span_id=None, transaction=None, handled=True,
        attributes=None, resource=None, options=OPTIONS,
    )  # fmt: skip
    sent(event)
    stacktrace = event["exception"]["values"][0]["stacktrace"]
    total = len(list(_walk(exc.__traceback__)))
    assert len(stacktrace["frames"]) == frames.MAX_FRAMES
    assert stacktrace["frames_omitted"] == [50, total - 50]
    assert stacktrace["frames"][0]["function"] == "caught" and stacktrace["frames"][-1]["function"] == "recurse"


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_huge_events_are_trimmed_below_the_item_limit(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A module whose lines are long: 25 chained exceptions × up to 100 frames × 11 lines of ~1000 chars.
    filler = "#" + "x" * 990
    source = "\n".join([
        "def deep(n, i):",
        f"    {filler}",
        "    if n:",
        f"        return deep(n - 1, i)  {filler}",
        f"    {filler}",
        "    raise ValueError('v' * 20000 + str(i))",
        f"    {filler}",
        f"    {filler}",
    ])  # fmt: skip
    (tmp_path / "longlines.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    import longlines  # type: ignore[import-not-found]

    def chain(i: int) -> None:
        try:
            if i:
                chain(i - 1)
        finally:
            longlines.deep(120, i)

    exc = caught(lambda: chain(24))
    event = exception_event(
        exc, trace_id=1, span_id=1, parent_span_id=None, transaction=None, handled=True,
        attributes=None, resource=None, options=OPTIONS,
    )  # fmt: skip
    values = event["exception"]["values"]
    assert len(values) == 25
    assert len(values[-1]["value"]) == 8192  # values capped
    assert len(dumps(event)) <= 900 * 1024
    assert values[-1]["stacktrace"]["frames"][-1]["function"] == "deep"  # the newest keeps its frames
    sent(event)


def test_live_exception_is_used_only_for_the_event_that_recorded_it() -> None:
    recorder = Recorder()
    first, second = caught(lambda: lookup({}, "k")), caught(load_config)
    with recorder.tracer.start_as_current_span("work") as span:
        span.record_exception(first)
        span.record_exception(second)
    # A wrong index (events shift when the SDK drops some over its limit) must not mislabel an error.
    key_error, runtime_error = error_events(recorder.root(), None, OPTIONS, {0: second, 1: second})
    assert [v["type"] for v in key_error["exception"]["values"]] == ["KeyError"]
    assert [v["type"] for v in runtime_error["exception"]["values"]] == ["KeyError", "RuntimeError"]
    for event in (key_error, runtime_error):
        sent(event)
