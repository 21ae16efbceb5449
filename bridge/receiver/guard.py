"""The HTTP-layer guard in front of the receiver's WSGI app: bearer tokens and per-sender limits.

It runs before any route (``/v1/traces`` and every other export path), so every signal inherits it:

- without a valid ``Authorization: Bearer <token>``: 401 with ``WWW-Authenticate: Bearer`` and
  ``Connection: close``; the body is neither read nor decoded nor logged;
- ``/health`` is open (it holds counts only), unless a health token file is given: then it needs one
  of those tokens (or any sender token);
- a sender over its fair share of a filling queue: 429 with ``Retry-After`` (``limits.py``);
- the authenticated :class:`~bridge.receiver.auth.Sender` is put in the environ for the app, which
  rejects spans of services the token may not send for (``auth.restrict_services``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Callable, Optional

from google.protobuf import json_format
from google.rpc import status_pb2

from bridge.receiver.auth import SENDER_KEY, TOKENS_KEY, TokenFile, bearer_token
from bridge.receiver.limits import SenderLimits

__all__ = ["Guard", "HEALTH_PATH"]

logger = logging.getLogger(__name__)

HEALTH_PATH = "/health"
_REASONS = {401: "Unauthorized", 429: "Too Many Requests"}
_GRPC_CODE = {401: 16, 429: 8}  # UNAUTHENTICATED, RESOURCE_EXHAUSTED

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _CountingInput:
    """``wsgi.input`` that counts the bytes the app read (what a sender is charged)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self._stream.readline(size)
        self.count += len(data)
        return data

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class Guard:
    def __init__(
        self,
        app: WsgiApp,
        *,
        tokens: Optional[TokenFile] = None,
        health_tokens: Optional[TokenFile] = None,
        limits: Optional[SenderLimits] = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.health_tokens = health_tokens
        self.limits = limits
        self.unauthorized = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == HEALTH_PATH:
            if self.health_tokens is not None and not self._health_allowed(environ):
                return self._refuse(environ, start_response, 401, "a valid health token is required")
            return self._health(environ, start_response)
        sender_name = str(environ.get("REMOTE_ADDR") or "unknown")
        if self.tokens is not None:
            sender = self.tokens.sender(bearer_token(environ))
            if sender is None:
                self.unauthorized += 1
                self.tokens.count("unauthorized")
                return self._refuse(environ, start_response, 401, "a valid bearer token is required")
            environ[SENDER_KEY] = sender
            environ[TOKENS_KEY] = self.tokens
            sender_name = sender.name
        if self.limits is None:
            return self.app(environ, start_response)
        retry_after = self.limits.admit(sender_name)
        if retry_after is not None:
            logger.debug("otel-sentry-bridge serve: %s is over its share of the queue: 429", sender_name)
            headers = [("Retry-After", str(retry_after))]
            message = "this sender is over its share of the queue to Sentry; retry later"
            return self._refuse(environ, start_response, 429, message, headers)
        counting = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = counting
        try:
            return list(self.app(environ, start_response))  # buffered: the receiver's answers are small
        finally:
            self.limits.charge(sender_name, counting.count)

    def _health_allowed(self, environ: dict[str, Any]) -> bool:
        token = bearer_token(environ)
        allowed = self.health_tokens is not None and self.health_tokens.sender(token) is not None
        return allowed or (self.tokens is not None and self.tokens.sender(token) is not None)

    def _health(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        body = b"".join(self.app(environ, capture))
        if body and (self.tokens is not None or self.limits is not None):
            try:
                report = json.loads(body)
            except ValueError:
                report = None
            if isinstance(report, dict):
                report["security"] = self.report()
                body = json.dumps(report).encode()
        headers = [(n, v) for n, v in seen.get("headers", []) if n.lower() != "content-length"]
        start_response(seen.get("status", "500 Internal Server Error"), [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def report(self) -> dict[str, Any]:
        """Counts for /health: refusals by reason; never a token."""
        report: dict[str, Any] = {}
        if self.tokens is not None:
            report["tokens"] = len(self.tokens)
            report["refused"] = dict(self.tokens.refused)
        if self.limits is not None:
            report["over_share_429"] = self.limits.refused
        return report

    def _refuse(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        status: int,
        message: str,
        headers: Optional[list[tuple[str, str]]] = None,
    ) -> Iterable[bytes]:
        is_json = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower() == "application/json"
        answer = status_pb2.Status(code=_GRPC_CODE[status], message=message)
        if is_json:
            body: bytes = json_format.MessageToJson(answer, indent=None).encode()
        else:
            body = answer.SerializeToString()
        extra = list(headers or [])
        if status == 401:
            extra += [("WWW-Authenticate", 'Bearer realm="otel-sentry-bridge"'), ("Connection", "close")]
        start_response(
            f"{status} {_REASONS[status]}",
            [
                ("Content-Type", "application/json" if is_json else "application/x-protobuf"),
                ("Content-Length", str(len(body))),
                *extra,
            ],
        )
        return [body]
