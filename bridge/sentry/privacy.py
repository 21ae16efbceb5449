"""What may leave the process: headers, client addresses, query strings, attribute values.

The rules of docs/conversion.md ("What is sent"), as sentry-sdk's WSGI middleware applies them by default.
Without ``send_default_pii``:

- the headers ``Cookie``, ``Authorization``, ``Proxy-Authorization``, ``X-Api-Key``, ``X-Forwarded-For``,
  ``X-Real-IP`` and ``Set-Cookie``, and any header whose name looks like a credential (see below), keep their
  name but their value becomes ``"[Filtered]"``;
- no client IP address leaves (attributes in ``SENSITIVE_ATTRIBUTE_KEYS`` are dropped);
- query parameters and attribute values whose names look like a credential (``password``, ``secret``,
  ``token``, ``api_key``, ``session``, ``passwd``, ``auth``, ``credentials``; case-insensitive substring,
  like Sentry's server-side scrubber, so ``access_token`` and ``X-Auth-Token`` match too) become
  ``"[Filtered]"``;
- user name and password in URLs are removed.

Request and response bodies never leave, with or without ``send_default_pii``. The small functions here are
meant for reuse wherever OpenTelemetry attributes are about to leave the process.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "FILTERED",
    "MAX_VALUE_CHARS",
    "SENSITIVE_ATTRIBUTE_KEYS",
    "SENSITIVE_HEADERS",
    "filter_attributes",
    "is_sensitive_header",
    "is_sensitive_name",
    "mask_header_value",
    "scrub_query",
    "scrub_url",
]

logger = logging.getLogger(__name__)

FILTERED: Final = "[Filtered]"
# Longest string value we send in attributes, messages and exception values (characters).
MAX_VALUE_CHARS: Final = 8192

SENSITIVE_HEADERS: Final = frozenset(
    {
        "cookie",
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-forwarded-for",
        "x-real-ip",
        "set-cookie",
    }
)

# Attributes that carry the client's address (old and new semantic conventions): never sent without PII.
SENSITIVE_ATTRIBUTE_KEYS: Final = frozenset(
    {
        "client.address",
        "client.socket.address",
        "http.client_ip",
        "net.peer.ip",
        "net.sock.peer.addr",
        "network.peer.address",
    }
)

_SENSITIVE_NAME = re.compile(r"passw(?:or)?d|secret|token|api[-_]?key|session|auth|credential", re.IGNORECASE)

# Attributes holding a URL or a query string, whose query parameters get scrubbed.
_URL_KEYS: Final = frozenset({"http.url", "url.full"})
_TARGET_KEYS: Final = frozenset({"http.target"})
_QUERY_KEYS: Final = frozenset({"url.query"})
_HEADER_PREFIXES: Final = ("http.request.header.", "http.response.header.")

# What to do with an attribute, by key (computed once per distinct key, see _action).
_KEEP, _DROP, _HEADER, _URL, _TARGET, _QUERY, _MASK = range(7)
_actions: dict[str, int] = {}
_MAX_CACHED_KEYS: Final = 4096


def is_sensitive_name(name: str) -> bool:
    """Whether a field, parameter or attribute name looks like it holds a credential."""
    return _SENSITIVE_NAME.search(name) is not None


@functools.lru_cache(maxsize=1024)
def is_sensitive_header(name: str) -> bool:
    """Whether a header's value must be masked without PII. Accepts ``X-Api-Key``, ``x_api_key`` alike."""
    normalized = name.strip().lower().replace("_", "-")
    return normalized in SENSITIVE_HEADERS or is_sensitive_name(normalized)


def mask_header_value(value: Any) -> Any:
    """``"[Filtered]"`` in the shape of ``value`` (captured headers are sequences of strings)."""
    if isinstance(value, (list, tuple)):
        return [FILTERED] * max(len(value), 1)
    return FILTERED


def scrub_query(query: str) -> str:
    """A query string with the values of credential-like parameters replaced by ``[Filtered]``.

    Parameter order and the encoding of everything else are kept. ``"a=1&password=x"`` →
    ``"a=1&password=[Filtered]"``.
    """
    if not query:
        return query
    probe = unquote_plus(query) if "%" in query or "+" in query else query
    if not is_sensitive_name(probe):
        return query
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        if is_sensitive_name(unquote_plus(name)):
            parts.append(f"{name}={FILTERED}")
        else:
            parts.append(pair)
    return "&".join(parts)


def scrub_url(url: str) -> str:
    """A URL without user name or password in its authority and with its query scrubbed (see scrub_query)."""
    if "@" not in url and "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("?", 1)[0]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, scrub_query(parts.query), parts.fragment))


def _scrub_target(target: str) -> str:
    path, sep, query = target.partition("?")
    return path + sep + scrub_query(query) if sep else target


def _action(key: str) -> int:
    action = _actions.get(key)
    if action is not None:
        return action
    if key in SENSITIVE_ATTRIBUTE_KEYS:
        action = _DROP
    elif key.startswith(_HEADER_PREFIXES):
        action = _HEADER if is_sensitive_header(key.split(".", 3)[3]) else _KEEP
    elif key in _URL_KEYS:
        action = _URL
    elif key in _TARGET_KEYS:
        action = _TARGET
    elif key in _QUERY_KEYS:
        action = _QUERY
    elif not key.startswith("sentry.") and is_sensitive_name(key):
        action = _MASK
    else:
        action = _KEEP
    if len(_actions) >= _MAX_CACHED_KEYS:
        _actions.clear()
    _actions[key] = action
    return action


def _cap(value: Any) -> Any:
    """Strings, and strings in sequences (captured headers are lists), cut at ``MAX_VALUE_CHARS``."""
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS] if len(value) > MAX_VALUE_CHARS else value
    if isinstance(value, (list, tuple)) and any(isinstance(i, str) and len(i) > MAX_VALUE_CHARS for i in value):
        return [item[:MAX_VALUE_CHARS] if isinstance(item, str) else item for item in value]
    return value


def filter_attributes(attributes: Mapping[str, Any] | None, send_default_pii: bool) -> dict[str, Any]:
    """A plain copy of OpenTelemetry attributes fit to leave the process (long strings capped).

    Without PII: client addresses dropped, sensitive headers masked, query parameters scrubbed, and string
    values of credential-like keys masked (numbers stay: ``gen_ai.usage.input_tokens`` is a count).
    """
    if not attributes:
        return {}
    if send_default_pii:
        return {key: _cap(value) for key, value in attributes.items()}
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        action = _actions.get(key)
        if action is None:
            action = _action(key)
        if action == _KEEP:
            if value.__class__ is str:
                out[key] = value[:MAX_VALUE_CHARS] if len(value) > MAX_VALUE_CHARS else value
            else:
                out[key] = _cap(value)
        elif action == _DROP:
            continue
        elif action == _HEADER:
            out[key] = mask_header_value(value)
        elif action == _MASK:
            is_text = isinstance(value, str) or (
                isinstance(value, (list, tuple)) and any(isinstance(item, str) for item in value)
            )
            out[key] = mask_header_value(value) if is_text else value
        elif not isinstance(value, str):
            out[key] = value
        elif action == _URL:
            out[key] = _cap(scrub_url(value))
        elif action == _TARGET:
            out[key] = _cap(_scrub_target(value))
        else:  # _QUERY
            out[key] = _cap(scrub_query(value))
    return out
