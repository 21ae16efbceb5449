"""A Sentry envelope receiver on loopback: real HTTP in, every envelope judged as Sentry would judge it.

``POST /api/1/envelope/`` authenticated by ``X-Sentry-Auth: Sentry sentry_key=publickey`` (or ``?sentry_key=``
or a ``dsn`` in the envelope header), as with ``receiver.dsn``. Each body goes through
``tests.judges.assert_valid_envelope`` (gunzip, strict item lengths, sentry-sdk's parser, Relay's normalizer)
before it is answered. Anything wrong becomes a line in ``problems`` and a 4xx, the way Sentry would answer;
tests assert ``problems`` is empty (the fixture does at teardown). Faults: assign ``receiver.responder``
(``Request -> Reply``), e.g. ``rate_limited("transaction")``; envelopes are judged whatever is answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from tests.httpserver import Reply, Request, Responder
from tests.judges import assert_valid_envelope
from tests.peers.receiver import JudgingReceiver

__all__ = ["PUBLIC_KEY", "PROJECT_ID", "Received", "SentryReceiver", "accept", "rate_limited"]

PUBLIC_KEY = "publickey"
PROJECT_ID = 1

Items = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Received:
    """One request: its judged items (empty when it was refused), the status answered, the problem if any."""

    request: Request
    items: Items
    status: int  # 0 for a hang
    problem: Optional[str] = None

    @property
    def accepted(self) -> bool:
        return self.problem is None and 200 <= self.status < 300


def accept(request: Request) -> Reply:
    """What Sentry answers to an accepted envelope: 200 and the event id."""
    try:
        event_id = json.loads(request.data.partition(b"\n")[0]).get("event_id")
    except ValueError:
        event_id = None
    return Reply(200, {"Content-Type": "application/json"}, json.dumps({"id": event_id}).encode())


def rate_limited(categories: str = "", seconds: int = 60, status: int = 429) -> Responder:
    """A responder that answers with ``X-Sentry-Rate-Limits: SECONDS:CATEGORIES:key`` (all categories if empty)."""
    headers = {"X-Sentry-Rate-Limits": f"{seconds}:{categories}:key", "Retry-After": str(seconds)}
    return lambda request: Reply(status, dict(headers))


def _keys(request: Request) -> list[str]:
    """Every public key the request names, the way Relay finds them."""
    keys = []
    auth = request.headers.get("x-sentry-auth", "")
    if auth:
        scheme, _, params = auth.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        keys.append(fields.get("sentry_key", "") if scheme == "Sentry" else f"<bad X-Sentry-Auth {auth!r}>")
    keys.extend(request.query.get("sentry_key", []))
    try:
        dsn = json.loads(request.data.partition(b"\n")[0]).get("dsn")
    except (ValueError, AttributeError):
        dsn = None
    if dsn:
        keys.append(urlsplit(dsn).username or "")
    return keys


class SentryReceiver(JudgingReceiver):
    """``with SentryReceiver() as receiver:``; point a client at ``receiver.dsn``."""

    def __init__(self, responder: Optional[Responder] = None, port: int = 0) -> None:
        self.received: list[Received] = []
        super().__init__(accept, responder, port)

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{PROJECT_ID}"

    def _receive(self, request: Request) -> Reply:
        status, problem, items = self._judge(request)
        reply = Reply(status, {"Content-Type": "text/plain"}, (problem or "").encode())
        if problem is None:
            reply = self._answer(request)
        with self._arrived:
            self.received.append(Received(request, items, 0 if reply.hang else reply.status, problem))
            self._arrived.notify_all()
        return reply

    def _judge(self, request: Request) -> tuple[int, Optional[str], Items]:
        where = f"{request.method} {request.path}"
        if request.method != "POST" or request.path != f"/api/{PROJECT_ID}/envelope/":
            return 404, f"{where}: not this project's envelope endpoint", []
        keys = _keys(request)
        if not keys or any(key != PUBLIC_KEY for key in keys):
            return 403, f"{where}: public keys {keys}, expected {PUBLIC_KEY!r}", []
        try:
            items = assert_valid_envelope(request.body, request.headers.get("content-encoding", ""))
        except Exception as exc:  # the judges raise AssertionError, Relay its own errors, parsers theirs
            return 400, f"{where}: invalid envelope: {type(exc).__name__}: {exc}\n{request.data[:2000]!r}", []
        return 200, None, items

    # -- reading back -----------------------------------------------------------------------------------------

    @property
    def problems(self) -> list[str]:
        with self._arrived:
            return [r.problem for r in self.received if r.problem is not None]

    def assert_all_valid(self) -> None:
        problems = self.problems
        assert not problems, f"{len(problems)} envelope(s) Sentry would refuse:\n" + "\n\n".join(problems)

    def take_problems(self) -> list[str]:
        """The problems so far, forgotten afterwards (for tests that send bad envelopes on purpose)."""
        with self._arrived:
            problems = [r.problem for r in self.received if r.problem is not None]
            self.received = [r for r in self.received if r.problem is None]
            return problems

    def clear(self) -> None:
        super().clear()
        with self._arrived:
            self.received.clear()

    def envelopes(self, accepted_only: bool = False) -> list[Items]:
        """The judged envelopes in arrival order, each as ``[(item_type, payload), ...]``."""
        with self._arrived:
            return [r.items for r in self.received if r.problem is None and (r.accepted or not accepted_only)]

    def items(self, kind: str, accepted_only: bool = False) -> list[dict[str, Any]]:
        """Payloads of every item of one type (``event``, ``transaction``, ``client_report``...)."""
        return [payload for items in self.envelopes(accepted_only) for (t, payload) in items if t == kind]

    def events(self) -> list[dict[str, Any]]:
        return self.items("event")

    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")

    def client_reports(self) -> list[dict[str, Any]]:
        return self.items("client_report")

    def wait_for_items(self, kind: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` items of ``kind`` arrived in valid envelopes; AssertionError on timeout."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.items(kind)) >= count, timeout):
                got = len(self.items(kind))
                raise AssertionError(
                    f"expected {count} {kind} items within {timeout}s, got {got}; problems: {self.problems}"
                )
            return self.items(kind)
