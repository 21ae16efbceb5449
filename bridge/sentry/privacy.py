"""Placeholder until the converter branch lands (it owns the full privacy rules)."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

SENSITIVE_ATTRIBUTE_KEYS = frozenset(
    {"client.address", "client.port", "net.peer.ip", "net.peer.name", "net.peer.port", "http.client_ip",
     "net.sock.peer.addr", "net.sock.peer.port", "network.peer.address", "network.peer.port"}
)
_SENSITIVE_NAME = re.compile(r"pass|secret|token|api[-_]?key|session|auth|credential|sig", re.I)


def scrub_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "[Filtered]" if _SENSITIVE_NAME.search(k) else v) for k, v in pairs])
