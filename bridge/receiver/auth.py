"""Bearer-token authentication for ``serve``: the token file, constant-time checks, per-token services.

The token file has one token per line, optionally followed by the ``service.name`` patterns (``*`` and
``?`` globs) that token may send for; blank lines and ``#`` comments are skipped, surrounding whitespace
(and a Windows line end) is ignored::

    # token                              services it may send for (none: any)
    4f1c0e8a9b7d2c6e5a3f1b0d9c8e7a6b     checkout checkout-*
    a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5

A token is never logged nor put in an error message: it is named by its line ("token on line 3").
Presented tokens are compared with every known token in constant time (``hmac.compare_digest`` of
SHA-256 digests, all of them, whichever matches), so timing reveals neither a prefix nor which token.
``reload()`` re-reads the file (on SIGHUP); if the file cannot be read or parsed then, the tokens in use
stay and a warning says why.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Callable, Optional

from bridge.errors import ConfigError

__all__ = [
    "Sender",
    "TokenFile",
    "parse_tokens",
    "bearer_token",
    "restrict_services",
    "restrict_resources",
    "service_of_span",
    "SENDER_KEY",
    "TOKENS_KEY",
]

logger = logging.getLogger(__name__)

SENDER_KEY = "otel_sentry_bridge.sender"  # the WSGI environ key of the authenticated Sender
TOKENS_KEY = "otel_sentry_bridge.tokens"  # ... and of the TokenFile, which counts refusals
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token: what may follow "Bearer "
MIN_TOKEN_LENGTH = 16
MAX_FILE = 1 << 20  # characters: a token file is small; a huge one is a mistake (a wrong path)


@dataclass(frozen=True)
class Sender:
    """Who sent a request: ``name`` is safe to log (never the token); ``services`` None means any."""

    name: str
    services: Optional[tuple[str, ...]] = None

    def may_send_for(self, service: str) -> bool:
        return self.services is None or any(fnmatchcase(service, pattern) for pattern in self.services)


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    sender: Sender


def parse_tokens(text: str, source: str) -> list[_Entry]:
    """The entries of a token file's ``text``; a ConfigError naming ``source`` and the line, never the token."""
    entries: list[_Entry] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()  # '#' cannot be part of a token: the rest is a comment
        if not line:
            continue
        token, *services = line.split()
        if not _TOKEN.fullmatch(token):
            raise ConfigError(
                source, f"line {number}", "a token may hold only letters, digits and -._~+/ (then '=' padding)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(source, f"line {number}", f"the token is shorter than {MIN_TOKEN_LENGTH} characters")
        digest = hashlib.sha256(token.encode()).digest()
        if digest in seen:
            raise ConfigError(source, f"line {number}", f"the same token as on line {seen[digest]}")
        seen[digest] = number
        sender = Sender(f"token on line {number}", tuple(services) if services else None)
        entries.append(_Entry(digest, sender))
    if not entries:
        raise ConfigError(source, "no token", "the file has no token (one per line)")
    return entries


def _read(path: str, setting: str) -> list[_Entry]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(setting, path, f"cannot read the token file ({type(exc).__name__}: {exc})") from None
    if len(text) > MAX_FILE:
        raise ConfigError(setting, path, f"the token file is larger than {MAX_FILE} characters")
    return parse_tokens(text, f"{setting} {path}")


def bearer_token(environ: dict[str, Any]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = str(environ.get("HTTP_AUTHORIZATION") or "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class TokenFile:
    """The tokens of a file, checked in constant time; ``reload()`` re-reads it, keeping the old on failure."""

    def __init__(self, path: str, setting: str = "--bearer-token-file") -> None:
        self.path = path
        self.setting = setting
        self._entries: Sequence[_Entry] = _read(path, setting)  # unreadable at start: the ConfigError goes up
        self._lock = threading.Lock()
        self.refused: Counter[str] = Counter()  # refusals by reason, for /health

    def __len__(self) -> int:
        return len(self._entries)

    def reload(self) -> bool:
        """Re-read the file; True if the new tokens are in use, False (and a warning) if the old ones stay."""
        try:
            entries = _read(self.path, self.setting)
        except ConfigError as exc:
            logger.warning("otel-sentry-bridge serve: token file not reloaded, the previous tokens stay: %s", exc)
            return False
        self._entries = entries
        logger.info("otel-sentry-bridge serve: token file %s reloaded (%d tokens)", self.path, len(entries))
        return True

    def sender(self, token: Optional[str]) -> Optional[Sender]:
        """The Sender a presented ``token`` belongs to, or None; constant time over all known tokens."""
        presented = hashlib.sha256((token or "").encode("utf-8", "replace")).digest()
        found: Optional[Sender] = None
        for entry in self._entries:  # no early exit: every entry is compared
            if hmac.compare_digest(presented, entry.digest) and token:
                found = entry.sender
        return found

    def count(self, reason: str, amount: int = 1) -> None:
        with self._lock:
            self.refused[reason] += amount


def service_of_span(item: Any) -> str:
    """The resource ``service.name`` of a span (or of any record with a ``resource``)."""
    resource = getattr(item, "resource", None)
    name = resource.attributes.get("service.name") if resource is not None else None
    return name if isinstance(name, str) else "unknown_service"


def restrict_services(
    environ: dict[str, Any],
    items: list[Any],
    reject: Callable[[str, int], None],
    service_of: Callable[[Any], str] = service_of_span,
) -> list[Any]:
    """The ``items`` (spans, log records...) the request's sender may send, by ``service_of(item)``;
    ``reject(problem, count)`` for the rest. Without an authenticated sender, or one allowed any
    service, ``items`` are returned as they are."""
    sender = environ.get(SENDER_KEY)
    if not isinstance(sender, Sender) or sender.services is None:
        return items
    kept: list[Any] = []
    refused: Counter[str] = Counter()
    for item in items:
        service = service_of(item)
        if sender.may_send_for(service):
            kept.append(item)
        else:
            refused[service] += 1
    for service, count in refused.items():
        reject(f"the {sender.name} may not send for service.name {service[:100]!r}: rejected", count)
    counter = environ.get(TOKENS_KEY)
    if refused and isinstance(counter, TokenFile):
        counter.count("service_not_allowed", sum(refused.values()))
    return kept


def _proto_service(resource_entry: Any) -> str:
    for attribute in resource_entry.resource.attributes:
        if attribute.key == "service.name" and attribute.value.WhichOneof("value") == "string_value":
            return str(attribute.value.string_value)
    return "unknown_service"


def restrict_resources(environ: dict[str, Any], entries: Any, records_of: Callable[[Any], int]) -> Counter[str]:
    """Remove from the repeated protobuf field ``entries`` (e.g. ``ExportLogsServiceRequest.resource_logs``)
    the resources whose ``service.name`` the request's sender may not send for; the problems, with the
    number of records (``records_of(entry)``) each rejected, for ``partial_success``."""
    sender = environ.get(SENDER_KEY)
    problems: Counter[str] = Counter()
    if not isinstance(sender, Sender) or sender.services is None:
        return problems
    kept = []
    for entry in entries:
        service = _proto_service(entry)
        if sender.may_send_for(service):
            kept.append(entry)
        else:
            problems[f"the {sender.name} may not send for service.name {service[:100]!r}: rejected"] += records_of(
                entry
            )
    if problems:
        copies = [type(entry)() for entry in kept]
        for copy, entry in zip(copies, kept):
            copy.CopyFrom(entry)
        del entries[:]
        entries.extend(copies)
        counter = environ.get(TOKENS_KEY)
        if isinstance(counter, TokenFile):
            counter.count("service_not_allowed", sum(problems.values()))
    return problems
