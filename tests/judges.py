"""The real judges of what the bridge sends, shared by every test (one assertion helper, used everywhere).

- Sentry envelopes: parsed by sentry-sdk's own ``Envelope.deserialize``, item lengths checked strictly
  (sentry-sdk is lenient there), and every event and transaction run through Relay's ``StoreNormalizer``:
  the code Sentry's ingestion runs. No recorded ``errors`` and no exception, or the test fails.
- OTLP bodies: decoded with the official ``opentelemetry-proto`` messages.
"""
from __future__ import annotations

import json
import re
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sentry_relay.processing import StoreNormalizer
from sentry_sdk.envelope import Envelope as SdkEnvelope

from tests.httpserver import decompress

__all__ = ["assert_valid_check_in", "assert_valid_envelope", "decode_otlp", "normalize"]

_normalizer = StoreNormalizer(project_id=1, remove_other=True)


def normalize(event: dict[str, Any]) -> dict[str, Any]:
    """Relay's verdict on one event or transaction; fails the test on any recorded problem."""
    out: dict[str, Any] = _normalizer.normalize_event(event)
    problems = out.get("errors") or []
    assert not problems, f"Relay recorded problems: {problems}\nmeta: {out.get('_meta')}\nevent: {event}"
    return out


_HEX32 = re.compile(r"[0-9a-f]{32}")
_CHECK_IN_KEYS = {"check_in_id", "monitor_slug", "status", "duration", "release", "environment", "monitor_config",
                  "contexts"}  # fmt: skip


def assert_valid_check_in(payload: dict[str, Any]) -> None:
    """Sentry's documented check-in schema (develop.sentry.dev "Check-Ins"; Relay's relay-monitors ``CheckIn``):
    a 32-hex ``check_in_id``, a slug Relay keeps as sent (1 to 50 characters; Sentry's slug rules),
    ``in_progress``/``ok``/``error``, a duration in seconds on final check-ins only, an environment of at most 64
    characters, a crontab or interval schedule, whole minutes, and a 32-hex trace id."""
    unknown = set(payload) - _CHECK_IN_KEYS
    assert not unknown, f"check-in fields Sentry does not know: {unknown}"
    assert isinstance(payload.get("check_in_id"), str) and _HEX32.fullmatch(payload["check_in_id"]), payload
    slug = payload.get("monitor_slug")
    assert isinstance(slug, str) and re.fullmatch(r"(?![0-9]+$)[a-z0-9_-]{1,50}", slug), f"bad slug {slug!r}"
    assert payload.get("status") in ("in_progress", "ok", "error"), payload
    if "duration" in payload:
        assert payload["status"] != "in_progress", "a duration only takes effect on ok/error"
        assert isinstance(payload["duration"], (int, float)) and payload["duration"] >= 0, payload
    for key in ("release", "environment"):
        assert key not in payload or isinstance(payload[key], str), payload
    assert len(payload.get("environment", "")) <= 64
    config = payload.get("monitor_config")
    if config is not None:
        assert set(config) <= {"schedule", "checkin_margin", "max_runtime", "timezone", "failure_issue_threshold",
                               "recovery_threshold"}, config  # fmt: skip
        schedule = config["schedule"]
        if schedule["type"] == "crontab":
            assert set(schedule) == {"type", "value"} and len(schedule["value"].split()) == 5, schedule
        else:
            assert schedule["type"] == "interval", schedule
            assert schedule["unit"] in ("year", "month", "week", "day", "hour", "minute"), schedule
            assert isinstance(schedule["value"], int) and schedule["value"] > 0, schedule
        for key in ("checkin_margin", "max_runtime"):
            assert key not in config or (isinstance(config[key], int) and config[key] >= 0), config
        assert "timezone" not in config or isinstance(config["timezone"], str), config
    contexts = payload.get("contexts")
    if contexts is not None:
        assert _HEX32.fullmatch(contexts["trace"]["trace_id"]), contexts


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
        elif item_header["type"] == "check_in":
            assert_valid_check_in(value)
        result.append((item_header["type"], value))
    return result


def decode_otlp(body: bytes, content_encoding: str = "") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(decompress(body, content_encoding) if content_encoding else body)
    return request
