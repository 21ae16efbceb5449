from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from bridge.sentry import envelope as envelope_module
from bridge.sentry.envelope import Envelope, dumps
from tests.judges import assert_valid_envelope


def test_error_event_envelope_passes_the_judges() -> None:
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": 1_700_000_000.5,
        "platform": "python",
        "level": "error",
        "exception": {"values": [{"type": "ValueError", "value": "bad ünïcode"}]},
    }
    raw = Envelope.for_event(event).serialize()
    [(kind, sent)] = assert_valid_envelope(raw)
    assert kind == "event"
    assert sent["exception"]["values"][0]["value"] == "bad ünïcode"


def _stdlib(value: object) -> bytes:
    return envelope_module._encoder.encode(value).encode("utf-8")


SAMPLES: list[object] = [
    {"event_id": "a" * 32, "type": "transaction", "start_timestamp": 1_796_283_853.0025752, "spans": []},
    {"text": "bad ünïcode ✓ 𝄞 \u2028 \x00 \"quoted\" \\ back", "n": -(2**63), "big": 2**63 - 1, "f": 0.1},
    {"nested": {"list": [1, 2.5, True, False, None, "s"], "tuple": (1, "two"), "empty": {}}},
    {3: "int key", 2.5: "float key", True: "bool key", None: "none key"},  # the standard library's str(key)
    {"when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "id": uuid.UUID(int=7), "obj": object},
]


def test_orjson_writes_what_the_standard_library_writes() -> None:
    """The ``fast`` extra (orjson) changes the cost, never the bytes, for what events hold."""
    pytest.importorskip("orjson")
    assert envelope_module._fast is not None
    for value in SAMPLES:
        assert dumps(value) == _stdlib(value), value


def test_what_orjson_refuses_is_encoded_by_the_standard_library(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = {"value": 2**70, "deep": [[[[1]]]]}
    assert json.loads(dumps(huge)) == {"value": 2**70, "deep": [[[[1]]]]}
    assert dumps(huge) == _stdlib(huge)
    monkeypatch.setattr(envelope_module, "_fast", None)  # without orjson: the same bytes for every sample
    for value in SAMPLES:
        assert dumps(value) == _stdlib(value)


def test_a_transaction_from_the_converter_passes_the_judges_through_either_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = {
        "event_id": uuid.uuid4().hex,
        "type": "transaction",
        "platform": "python",
        "transaction": "GET /ünï",
        "transaction_info": {"source": "route"},
        "start_timestamp": 1_700_000_000.25,
        "timestamp": 1_700_000_000.5,
        "contexts": {"trace": {"trace_id": "0" * 31 + "1", "span_id": "0" * 15 + "1", "op": "http.server"}},
        "spans": [],
    }
    fast = Envelope.for_event(event).serialize()
    monkeypatch.setattr(envelope_module, "_fast", None)
    slow = Envelope.for_event(event).serialize()
    for raw in (fast, slow):
        [(kind, sent)] = assert_valid_envelope(raw)
        assert kind == "transaction" and sent["transaction"] == "GET /ünï"


def test_an_encoded_event_holds_no_spare_buffer_capacity() -> None:
    """Envelopes built in the caller wait in the transport's queue: each must hold its length, not the
    capacity of the encoder's write buffer (orjson's was 4 kB for a 1.2 kB transaction)."""
    import tracemalloc

    event = {"type": "transaction", "transaction": "benchmark.work", "spans": [], "contexts": {"trace": {
        "trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16], "data": {"x": "y" * 1000}}}}  # fmt: skip
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        encoded = dumps(event)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert json.loads(encoded) == event
    assert held < len(encoded) + 256, (held, len(encoded))
