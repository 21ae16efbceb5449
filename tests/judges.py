"""The real judges of what the bridge sends, shared by every test (one assertion helper, used everywhere).

- Sentry envelopes: parsed by sentry-sdk's own ``Envelope.deserialize``, item lengths checked strictly
  (sentry-sdk is lenient there), and every event and transaction run through Relay's ``StoreNormalizer``:
  the code Sentry's ingestion runs. No recorded ``errors`` and no exception, or the test fails.
- OTLP bodies: decoded with the official ``opentelemetry-proto`` messages.
"""
from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sentry_relay.processing import StoreNormalizer
from sentry_sdk.envelope import Envelope as SdkEnvelope

from tests.httpserver import decompress

__all__ = ["assert_valid_envelope", "decode_otlp", "normalize"]

_normalizer = StoreNormalizer(project_id=1, remove_other=True)


def normalize(event: dict[str, Any]) -> dict[str, Any]:
    """Relay's verdict on one event or transaction; fails the test on any recorded problem."""
    out: dict[str, Any] = _normalizer.normalize_event(event)
    problems = out.get("errors") or []
    assert not problems, f"Relay recorded problems: {problems}\nmeta: {out.get('_meta')}\nevent: {event}"
    return out


def _strict_items(raw: bytes) -> list[tuple[dict[str, Any], bytes]]:
    header_line, _, rest = raw.partition(b"\n")
    header = json.loads(header_line)
    assert isinstance(header, dict), header
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_header_line)
        length = item_header.get("length")
        assert isinstance(length, int), f"item without explicit length: {item_header}"
        payload, rest = rest[:length], rest[length:]
        assert len(payload) == length, f"item shorter than its length: {item_header}"
        assert rest[:1] in (b"\n", b""), f"item longer than its length {length}: {item_header}"
        rest = rest[1:]
        items.append((item_header, payload))
    return items


def assert_valid_envelope(raw: bytes, content_encoding: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Check one envelope body as Sentry would; returns ``[(item_type, payload_dict), ...]``.

    Events and transactions are returned as sent (not as normalized), so tests assert on our output.
    """
    body = decompress(raw, content_encoding) if content_encoding else raw
    parsed = SdkEnvelope.deserialize(body)
    items = _strict_items(body)
    assert len(parsed.items) == len(items)
    kinds = [h["type"] for h, _ in items]
    assert sum(k in ("event", "transaction") for k in kinds) <= 1, f"more than one event per envelope: {kinds}"
    result = []
    for item_header, payload in items:
        value = json.loads(payload)
        if item_header["type"] in ("event", "transaction"):
            assert len(payload) <= 1024 * 1024, "event item over 1 MiB"
            normalize(value)
            assert parsed.headers.get("event_id") == value["event_id"]
        result.append((item_header["type"], value))
    return result


def decode_otlp(body: bytes, content_encoding: str = "") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(decompress(body, content_encoding) if content_encoding else body)
    return request
