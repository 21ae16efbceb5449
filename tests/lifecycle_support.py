"""Shared by the lifecycle tests: both backends at once, and bodies that count their close() calls.

``Backends`` is the bridge configured against the OTLP receiver and the Sentry receiver together;
``delivered()`` flushes and returns what each received, so every scenario checks both sides.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import bridge
from tests.peers.otlp import OtlpReceiver, SpanView
from tests.peers.sentry import SentryReceiver

__all__ = ["Backends", "Delivered", "CountingBody", "SizedBody", "error_values"]


@dataclass
class Delivered:
    spans: list[SpanView]
    transactions: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def one_request(self) -> tuple[SpanView, dict[str, Any]]:
        """The single span and its Sentry transaction (same trace, same name): one request, ended once."""
        assert len(self.spans) == 1, [s.name for s in self.spans]
        assert len(self.transactions) == 1, [t["transaction"] for t in self.transactions]
        span, transaction = self.spans[0], self.transactions[0]
        assert transaction["contexts"]["trace"]["trace_id"] == span.trace_id
        assert transaction["contexts"]["trace"]["span_id"] == span.span_id
        assert transaction["transaction"] == span.name
        return span, transaction

    def errors_of(self, span: SpanView) -> list[str]:
        """``Type: value`` of each Sentry error event of that span's trace."""
        return [
            error_values(event)
            for event in self.events
            if event["contexts"]["trace"]["trace_id"] == span.trace_id
        ]


def error_values(event: dict[str, Any]) -> str:
    last = event["exception"]["values"][-1]
    return f"{last['type']}: {last['value']}"


class Backends:
    def __init__(self, otlp: OtlpReceiver, sentry: SentryReceiver, init: bool = True) -> None:
        """``init=False``: the bridge is configured elsewhere (an example project's own init)."""
        self.otlp = otlp
        self.sentry = sentry
        if init:
            bridge.init(otlp_endpoint=otlp.endpoint, dsn=sentry.dsn, service_name="lifecycle-tests")

    def delivered(self) -> Delivered:
        assert bridge.flush(10)
        return Delivered(self.otlp.spans(), self.sentry.transactions(), self.sentry.events())


class CountingBody:
    """An app's body with ``close()``: counts calls (thread-safe); can fail at a chunk or in every close()."""

    def __init__(
        self,
        chunks: list[bytes],
        fail_at: int = -1,
        fail_in_close: Optional[BaseException] = None,
    ) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.fail_in_close = fail_in_close
        self.closed = 0
        self.nexts_after_close = 0
        self._lock = threading.Lock()
        self._index = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            self.nexts_after_close += 1
            return b"after close"  # a badly written body: it keeps yielding
        index = self._index
        self._index += 1
        if index == self.fail_at:
            raise RuntimeError(f"failed at chunk {index}")
        if index >= len(self.chunks):
            raise StopIteration
        return self.chunks[index]

    def close(self) -> None:
        with self._lock:
            self.closed += 1
        if self.fail_in_close is not None:
            raise self.fail_in_close


class SizedBody(CountingBody):
    """The same with ``len()``: the number of chunks, or ``len_error`` raised."""

    def __init__(self, chunks: list[bytes], len_error: Optional[BaseException] = None, **kwargs: Any) -> None:
        super().__init__(chunks, **kwargs)
        self.len_error = len_error

    def __len__(self) -> int:
        if self.len_error is not None:
            raise self.len_error
        return len(self.chunks)
