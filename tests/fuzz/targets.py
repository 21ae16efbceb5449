"""The fuzz targets: one function per decoder, taking raw bytes; each raises only on a finding.

What each may raise and still be correct (anything else escaping is a finding):
- ``json`` / ``protobuf``: ``DecodeError`` (the request is answered 400);
- ``gzip``: the app's refusal (400 for broken data, 413 past the limit), for gzip and deflate;
- ``convert``: the protobuf path on to Sentry: decoded spans become transactions and error events, and
  those become envelopes; nothing may raise past the decoder's ``DecodeError``;
- the six stack-trace parsers: nothing at all (they take any text and return what they could read).
A result that is not the documented shape is a finding too.
"""

from __future__ import annotations

from typing import Callable

from bridge.receiver import app as receiver_app
from bridge.receiver.decode import Decoded, DecodeError, decode_protobuf
from bridge.receiver.otlpjson import decode_json
from bridge.sentry.context import ConvertOptions
from bridge.sentry.convert import transaction_event
from bridge.sentry.envelope import Envelope
from bridge.sentry.errors import error_events
from bridge.stacktraces.dotnet import parse_dotnet
from bridge.stacktraces.go import parse_go
from bridge.stacktraces.java import parse_java
from bridge.stacktraces.node import parse_node
from bridge.stacktraces.python import parse_python
from bridge.stacktraces.ruby import parse_ruby

__all__ = ["TARGETS", "GZIP_LIMIT"]

GZIP_LIMIT = 1 << 20  # a small limit, so bombs are cut short quickly


def _decoded(result: Decoded) -> None:
    assert isinstance(result, Decoded)
    assert result.rejected >= 0 and all(span.context is not None for span in result.spans)


def fuzz_json(data: bytes) -> None:
    try:
        _decoded(decode_json(data))
    except DecodeError:
        pass


def fuzz_protobuf(data: bytes) -> None:
    try:
        _decoded(decode_protobuf(data))
    except DecodeError:
        pass


def fuzz_convert(data: bytes) -> None:
    try:
        decoded = decode_protobuf(data)
    except DecodeError:
        return
    options = ConvertOptions()
    spans = decoded.spans
    for span in spans:
        children = [other for other in spans if other is not span]
        transaction = transaction_event(span, children, options)
        Envelope.for_event(transaction).serialize()
        for event in error_events(span, transaction.get("transaction"), options):
            Envelope.for_event(event).serialize()


def fuzz_gzip(data: bytes) -> None:
    for encoding in ("gzip", "deflate"):
        try:
            out = receiver_app.decompress(data, encoding, GZIP_LIMIT)
        except receiver_app._Refused as refused:  # the app's own refusal: a 400 or a 413 answer
            assert refused.status in (400, 413), refused.status
        else:
            assert isinstance(out, bytes) and len(out) <= GZIP_LIMIT


def _stack(parser: Callable[[str], list[dict]]) -> Callable[[bytes], None]:  # type: ignore[type-arg]
    def run(data: bytes) -> None:
        result = parser(data.decode("utf-8", "replace"))
        assert isinstance(result, list)
        for exc in result:
            assert isinstance(exc["type"], str) and isinstance(exc["frames"], list)

    return run


TARGETS: dict[str, Callable[[bytes], None]] = {
    "json": fuzz_json,
    "protobuf": fuzz_protobuf,
    "convert": fuzz_convert,
    "gzip": fuzz_gzip,
    "python": _stack(parse_python),
    "java": _stack(parse_java),
    "node": _stack(parse_node),
    "go": _stack(parse_go),
    "dotnet": _stack(parse_dotnet),
    "ruby": _stack(parse_ruby),
}
