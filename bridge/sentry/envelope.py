"""Sentry envelopes: a header line, then items (header line + payload). A small model that serializes itself.

One event or one transaction per envelope; a client report may ride along with either.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

__all__ = ["Item", "Envelope", "dumps", "CATEGORY_OF_ITEM"]

# Data categories for rate limits and client reports, by item type.
CATEGORY_OF_ITEM = {
    "event": "error",
    "transaction": "transaction",
    "client_report": "internal",
    "check_in": "monitor",
}

# No circular-reference bookkeeping (10 % of the encoding time): events are trees the converter builds; a
# cycle (only a before_send could make one) raises RecursionError in the worker, counted as internal_sdk_error.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, check_circular=False)

# orjson, when installed (the ``fast`` extra), encodes an event ~10x faster (0.6 us instead of 8 for a
# one-span transaction, benchmarks/README.md). Its options make it write what the standard library writes
# here: keys that are not strings become strings, datetimes and dataclasses go through ``str`` as every
# other unknown type does. What it refuses (an int beyond 64 bits, nesting deeper than 254, a cycle) is
# encoded by the standard library instead. Two differences remain: NaN and infinities become ``null``
# (the standard library writes ``NaN``, which is not JSON and which Relay rejects), and small floats are
# written ``1e-5`` rather than ``1e-05`` (the same number).
_fast: Optional[Callable[[Any], bytes]] = None
try:
    import orjson

    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def _orjson_dumps(value: Any) -> bytes:
        # A copy of exactly its length (~1 us for 2 kB): orjson's own bytes object keeps the capacity of
        # its write buffer (4 kB for a 1.2 kB transaction, 8 kB for a 2.3 kB error), and an envelope
        # built in the caller stays queued with it (benchmarks/celery_tasks.py: 2.8 MB more at 700 queued).
        return bytes(memoryview(orjson.dumps(value, default=str, option=_OPTIONS)))

    _fast = _orjson_dumps
except ImportError:  # the standard library alone
    pass


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; values JSON cannot express become their ``str``."""
    if _fast is not None:
        try:
            return _fast(value)
        except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
            pass
    return _encoder.encode(value).encode("utf-8")


_second: tuple[int, str] = (-1, "")


def _sent_at(moment: Optional[datetime]) -> str:
    """``sent_at`` with milliseconds; the date and time up to the second are formatted once per second."""
    global _second
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    now = time.time()
    whole = int(now)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((now - whole) * 1000):03d}Z"


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
        stamp = b'"sent_at":"%s"}\n' % _sent_at(sent_at).encode("ascii")
        headers = self.headers
        if "sent_at" in headers:  # rare (a caller's own): sent_at goes last, this one
            headers = {k: v for k, v in headers.items() if k != "sent_at"}
        head = dumps(headers)  # "{...}"
        head = head[:-1] + (b"," if len(head) > 2 else b"") + stamp
        return head + b"".join(item.serialize() for item in self.items)
