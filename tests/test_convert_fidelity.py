"""Fidelity: for the same exceptions in the same small app, our error events and the ones sentry-sdk itself
builds agree on exception types, values, and every in-app frame's function, module, lineno and context line.

Both paths are compared: the live exception object (what the bridge holds in-process) and the
``exception.stacktrace`` text of the span event (through the stack-trace parser; here its stand-in).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.transport import Transport

from bridge.sentry.convert import ConvertOptions, error_events, exception_event
from tests.convert_support import Recorder, sent, wsgi_client


class Shelf:
    class Empty(LookupError):
        pass

    def __init__(self) -> None:
        self.items: dict[str, int] = {}

    def take(self, name: str) -> int:
        if name not in self.items:
            raise Shelf.Empty(f"no {name} left")
        return self.items.pop(name)


def parse_quantity(text: str) -> int:
    return int(text)


def order(environ: dict[str, Any]) -> int:
    path = environ["PATH_INFO"]
    if path == "/stock":
        return Shelf().take("apples")
    if path == "/quantity":
        try:
            return parse_quantity("three")
        except ValueError as exc:
            raise RuntimeError("bad order") from exc
    if path == "/cleanup":
        try:
            return {"a": 1}["b"]
        except KeyError:
            return 1 // 0
    raise AssertionError(path)


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    quantity = order(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(quantity).encode()]


class Collecting(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[SdkEnvelope] = []

    def capture_envelope(self, envelope: SdkEnvelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def sdk_events() -> Iterator[Callable[[BaseException], dict[str, Any]]]:
    """sentry-sdk's own error event for an exception (its defaults, no integrations touching the process)."""
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=Collecting,
        default_integrations=False,
        auto_enabling_integrations=False,
        include_local_variables=False,
        project_root=os.getcwd(),
    )
    client = sentry_sdk.get_client()
    transport = client.transport
    assert isinstance(transport, Collecting)

    def capture(exc: BaseException) -> dict[str, Any]:
        before = len(transport.envelopes)
        sentry_sdk.capture_exception(exc)
        client.flush()
        (envelope,) = transport.envelopes[before:]
        event = envelope.get_event()
        assert event is not None
        return event

    yield capture
    client.close()
    sentry_sdk.get_global_scope().set_client(None)  # back to no client, without touching the process


def essentials(event: dict[str, Any]) -> list[tuple[Any, ...]]:
    out = []
    for value in event["exception"]["values"]:
        in_app = [
            (frame["function"], frame["module"], frame["lineno"], frame["context_line"])
            for frame in value["stacktrace"]["frames"]
            if frame.get("in_app")
        ]
        out.append((value["type"], value["value"], in_app))
    return out


@pytest.mark.parametrize("path", ["/stock", "/quantity", "/cleanup"])
@pytest.mark.parametrize("source", ["object", "text"])
def test_error_events_match_sentry_sdks(
    path: str, source: str, sdk_events: Callable[[BaseException], dict[str, Any]]
) -> None:
    early: list[dict[str, Any]] = []

    def capturing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # sentry-sdk sees the exception where OpenTelemetry's middleware records its text: same traceback.
        try:
            return app(environ, start_response)
        except Exception as exc:
            early.append(sdk_events(exc))
            raise

    recorder = Recorder()
    client = wsgi_client(capturing, recorder, "http")
    with pytest.raises(Exception) as raised:
        client.get(path)
    exc = raised.value
    options = ConvertOptions(project_root=os.getcwd())
    root = recorder.root()
    (ours,) = error_events(root, f"GET {path}", options, {0: exc} if source == "object" else None)
    sent(ours, options)
    # The live object's traceback has grown since (up to this test): compare with sentry-sdk on it now.
    theirs = sdk_events(exc) if source == "object" else early[0]

    expected = essentials(theirs)
    assert essentials(ours) == expected
    assert len(expected) == (1 if path == "/stock" else 2)
    assert all(in_app for _, _, in_app in expected)  # sentry-sdk found in-app frames: the comparison means something
    if path == "/stock":
        assert expected[0][0] == "Shelf.Empty"
        assert ours["exception"]["values"][0]["module"] == theirs["exception"]["values"][0]["module"] == __name__


def test_unsampled_exception_event_matches_sentry_sdks(sdk_events: Callable[[BaseException], dict[str, Any]]) -> None:
    try:
        order({"PATH_INFO": "/quantity"})
    except RuntimeError as exc:
        caught = exc
    options = ConvertOptions(project_root=os.getcwd())
    ours = exception_event(
        caught, trace_id=7, span_id=8, parent_span_id=None, transaction=None, handled=True,
        attributes=None, resource=None, options=options,
    )  # fmt: skip
    sent(ours, options)
    theirs = sdk_events(caught)
    assert essentials(ours) == essentials(theirs)
    # Every frame (in-app or not) agrees on where it is.
    for mine, sdk in zip(ours["exception"]["values"], theirs["exception"]["values"]):
        assert [(f["abs_path"], f["lineno"], f["filename"]) for f in mine["stacktrace"]["frames"]] == [
            (f["abs_path"], f["lineno"], f["filename"]) for f in sdk["stacktrace"]["frames"]
        ]
        assert [f.get("pre_context") for f in mine["stacktrace"]["frames"]] == [
            f.get("pre_context") for f in sdk["stacktrace"]["frames"]
        ]
