"""Sentry envelopes: a header line, then items (header line + payload). A small model that serializes itself.

One event or one transaction per envelope; a client report may ride along with either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

__all__ = ["Item", "Envelope", "dumps", "CATEGORY_OF_ITEM"]

# Data categories for rate limits and client reports, by item type.
CATEGORY_OF_ITEM = {
    "event": "error",
    "transaction": "transaction",
    "client_report": "internal",
}

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; values JSON cannot express become their ``str``."""
    return _encoder.encode(value).encode("utf-8")


@dataclass
class Item:
    type: str
    payload: bytes  # JSON, already encoded

    @classmethod
    def json(cls, type: str, value: Any) -> Item:
        return cls(type, dumps(value))

    @property
    def category(self) -> str:
        return CATEGORY_OF_ITEM.get(self.type, "default")

    def serialize(self) -> bytes:
        header = b'{"type":"%s","length":%d,"content_type":"application/json"}' % (
            self.type.encode("ascii"),
            len(self.payload),
        )
        return header + b"\n" + self.payload + b"\n"


@dataclass
class Envelope:
    headers: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)

    @classmethod
    def for_event(cls, event: dict[str, Any], dsc: Optional[dict[str, Any]] = None) -> Envelope:
        """An envelope holding one event or transaction (by ``event["type"]``)."""
        headers: dict[str, Any] = {"event_id": event["event_id"]}
        if dsc:
            headers["trace"] = dsc
        item_type = "transaction" if event.get("type") == "transaction" else "event"
        return cls(headers, [Item.json(item_type, event)])

    @property
    def category(self) -> str:
        """The category of the first item that is not a client report ("internal" if none)."""
        for item in self.items:
            if item.type != "client_report":
                return item.category
        return "internal"

    def serialize(self, sent_at: Optional[datetime] = None) -> bytes:
        headers = dict(self.headers)
        moment = sent_at or datetime.now(timezone.utc)
        headers["sent_at"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return dumps(headers) + b"\n" + b"".join(item.serialize() for item in self.items)
