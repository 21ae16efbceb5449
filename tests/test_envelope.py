from __future__ import annotations

import uuid

from bridge.sentry.envelope import Envelope
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
