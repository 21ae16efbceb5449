"""A Channels WebSocket consumer: echoes text; ``boom`` makes its ``receive`` handler raise (reported)."""

from __future__ import annotations

from typing import Any, Optional

from channels.generic.websocket import WebsocketConsumer

import bridge


def parse_command(text: str) -> str:
    commands = {"hello": "hello to you"}
    return commands[text]  # KeyError for a command nobody wrote


def answer(text: str) -> str:
    try:
        return parse_command(text)
    except KeyError as exc:
        raise RuntimeError(f"consumer could not handle {text!r}") from exc


class EchoConsumer(WebsocketConsumer):  # type: ignore[misc]
    def connect(self) -> None:
        bridge.set_tag("ws.consumer", "echo")
        self.accept()

    def receive(self, text_data: Optional[str] = None, bytes_data: Optional[bytes] = None, **kwargs: Any) -> None:
        self.send(text_data=answer(text_data or ""))  # "boom" raises: the connection closes, Sentry hears of it
