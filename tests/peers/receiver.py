"""What the OTLP and Sentry receivers share: a judge in front of a programmable answer.

Every request goes through ``_receive`` (the judge: decode, validate, record); the answer a test
programs with ``receiver.responder = ...`` is given only to what the judge accepted.
"""

from __future__ import annotations

import ssl
import threading
from typing import Optional, TypeVar

from tests.httpserver import RecordingServer, Reply, Request, Responder

Self = TypeVar("Self", bound="JudgingReceiver")


class JudgingReceiver(RecordingServer):
    def __init__(
        self,
        default: Responder,
        responder: Optional[Responder] = None,
        port: int = 0,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._answer: Responder = default
        self._arrived = threading.Condition()
        super().__init__(responder or default, port=port, tls=tls)

    def __enter__(self: Self) -> Self:
        self.start()
        return self

    @property  # type: ignore[override]
    def responder(self) -> Responder:
        return self._receive

    @responder.setter
    def responder(self, answer: Responder) -> None:
        self._answer = answer

    def _receive(self, request: Request) -> Reply:
        raise NotImplementedError
