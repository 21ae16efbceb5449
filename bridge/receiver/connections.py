"""Bounds on one connection of the built-in server: the TLS handshake, and the time a request may take.

- TLS: the handshake runs in the connection's own thread with its own timeout, so a client that opens
  a connection and never finishes the handshake holds a thread for ``handshake_timeout`` seconds at most.
- Slowloris: every read from the socket waits at most ``idle_timeout`` seconds, and once the first byte
  of a request arrived, the whole request (line, headers, body) must arrive within ``request_timeout``
  seconds, however slowly a sender trickles it.
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from typing import Any, Optional

__all__ = ["DeadlineReader", "secure", "reader"]


def secure(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    """``sock`` wrapped in TLS, the handshake done within ``timeout`` seconds (else an OSError)."""
    sock.settimeout(timeout)
    wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        wrapped.do_handshake()  # CPython bounds the whole handshake (not each read) by the socket's timeout
    except BaseException:
        wrapped.close()
        raise
    return wrapped


class DeadlineReader(io.RawIOBase):
    """The socket's read side: ``idle_timeout`` per read, ``request_timeout`` from a request's first byte."""

    def __init__(self, sock: Any, idle_timeout: float, request_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.deadline: Optional[float] = None  # None: waiting for a request's first byte

    def readable(self) -> bool:
        return True

    def next_request(self) -> None:
        """The previous request was answered: the next one's clock starts at its first byte."""
        self.deadline = None

    def readinto(self, buffer: Any) -> int:
        timeout = self.idle_timeout
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the request was not received within {self.request_timeout:g} seconds")
            timeout = min(timeout, left)
        self._sock.settimeout(timeout)
        count = int(self._sock.recv_into(buffer))
        if count and self.deadline is None:
            self.deadline = time.monotonic() + self.request_timeout
        return count


def reader(sock: Any, idle_timeout: float, request_timeout: float) -> io.BufferedReader:
    return io.BufferedReader(DeadlineReader(sock, idle_timeout, request_timeout), 65536)
