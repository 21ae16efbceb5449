"""``serve``'s settings: command-line options over ``OTEL_SENTRY_BRIDGE_*`` variables over defaults.

| option | variable | default |
|---|---|---|
| ``--listen HOST:PORT`` | ``OTEL_SENTRY_BRIDGE_LISTEN`` | ``127.0.0.1:4318`` |
| ``--routes FILE`` | ``OTEL_SENTRY_BRIDGE_ROUTES`` | none: every service goes to ``SENTRY_DSN`` |
| ``--max-body SIZE`` | ``OTEL_SENTRY_BRIDGE_MAX_BODY`` | ``20MiB`` (as sent and decompressed) |
| ``--buffer-ttl SECONDS`` | ``OTEL_SENTRY_BRIDGE_BUFFER_TTL`` | ``60`` |
| ``--root-delay SECONDS`` | ``OTEL_SENTRY_BRIDGE_ROOT_DELAY`` | ``2`` (0: no wait) |
| ``--buffer-spans N`` | ``OTEL_SENTRY_BRIDGE_BUFFER_SPANS`` | ``100000`` |
| ``--buffer-size SIZE`` | ``OTEL_SENTRY_BRIDGE_BUFFER_SIZE`` | ``256MiB`` (estimated) |
| ``--threads N`` | ``OTEL_SENTRY_BRIDGE_THREADS`` | ``16`` (connections served at once) |
| ``--shutdown-timeout SECONDS`` | ``OTEL_SENTRY_BRIDGE_SHUTDOWN_TIMEOUT`` | ``10`` |
| ``--bearer-token-file FILE`` | ``OTEL_SENTRY_BRIDGE_BEARER_TOKEN_FILE`` | none: no authentication |
| ``--health-token FILE`` | ``OTEL_SENTRY_BRIDGE_HEALTH_TOKEN`` | none: ``/health`` is open |
| ``--tls-cert FILE`` / ``--tls-key FILE`` | ``OTEL_SENTRY_BRIDGE_TLS_CERT`` / ``_TLS_KEY`` | none: plain HTTP |
| ``--tls-client-ca FILE`` | ``OTEL_SENTRY_BRIDGE_TLS_CLIENT_CA`` | none: no client certificate asked |
| ``--sender-limit-at FRACTION`` | ``OTEL_SENTRY_BRIDGE_SENDER_LIMIT_AT`` | ``0.5`` (1: no per-sender limit) |
| ``--request-timeout SECONDS`` | ``OTEL_SENTRY_BRIDGE_REQUEST_TIMEOUT`` | ``60`` (a request's bytes, all of them) |

Sizes take ``K``, ``M`` or ``G`` suffixes (binary: ``KiB``, ``MiB``, ``GiB`` also read).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from bridge.errors import ConfigError
from bridge.receiver.app import DEFAULT_MAX_BODY
from bridge.receiver.auth import TokenFile
from bridge.receiver.guard import Guard, WsgiApp
from bridge.receiver.limits import DEFAULT_THRESHOLD, SenderLimits
from bridge.receiver.routes import Routes
from bridge.receiver.sink import SentrySink
from bridge.receiver.tls import server_context

__all__ = [
    "ServeSettings",
    "build_sink",
    "parse_size",
    "parse_listen",
    "guarded",
    "tls_context",
    "exposure_warnings",
]

logger = logging.getLogger(__name__)

PREFIX = "OTEL_SENTRY_BRIDGE_"
_SIZE = re.compile(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str, setting: str) -> int:
    match = _SIZE.fullmatch(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(setting, text, "expected a size in bytes such as 1048576, 512K, 20MiB or 1G")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_listen(text: str, setting: str = "--listen") -> tuple[str, int]:
    host, sep, port_text = str(text).strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(setting, text, "expected HOST:PORT, e.g. 127.0.0.1:4318 or [::1]:4318")
    return host, int(port_text)


def _positive(kind: Callable[[str], Any]) -> Callable[[str, str], Any]:
    def parse(text: str, setting: str) -> Any:
        try:
            value = kind(str(text).strip())
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise ConfigError(setting, text, "expected a positive number")
        return value

    return parse


def _not_negative(text: str, setting: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(setting, text, "expected a number of seconds, 0 or more")
    return value


@dataclass(frozen=True)
class ServeSettings:
    listen: tuple[str, int] = ("127.0.0.1", 4318)
    routes: Optional[str] = None
    max_body: int = DEFAULT_MAX_BODY
    buffer_ttl: float = 60.0
    root_delay: float = 2.0
    buffer_spans: int = 100_000
    buffer_size: int = 256 << 20
    threads: int = 16
    shutdown_timeout: float = 10.0
    bearer_token_file: Optional[str] = None
    health_token: Optional[str] = None  # a token file too
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_client_ca: Optional[str] = None
    sender_limit_at: float = DEFAULT_THRESHOLD
    request_timeout: float = 60.0
    sentry_dsn: Optional[str] = None  # SENTRY_DSN

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None, **given: Any) -> ServeSettings:
        """``given`` values (None = not given) over ``OTEL_SENTRY_BRIDGE_<NAME>`` over the defaults."""
        env = os.environ if environ is None else environ
        parsers: dict[str, Callable[[str, str], Any]] = {
            "listen": parse_listen,
            "routes": lambda text, setting: str(text),
            "max_body": parse_size,
            "buffer_ttl": _positive(float),
            "root_delay": _not_negative,
            "buffer_spans": _positive(int),
            "buffer_size": parse_size,
            "threads": _positive(int),
            "shutdown_timeout": _positive(float),
            "bearer_token_file": lambda text, setting: str(text),
            "health_token": lambda text, setting: str(text),
            "tls_cert": lambda text, setting: str(text),
            "tls_key": lambda text, setting: str(text),
            "tls_client_ca": lambda text, setting: str(text),
            "sender_limit_at": _fraction,
            "request_timeout": _positive(float),
        }
        unknown = sorted(set(given) - set(parsers))
        if unknown:
            raise ConfigError(unknown[0], given[unknown[0]], f"unknown setting; known: {', '.join(parsers)}")
        values: dict[str, Any] = {}
        for name, parse in parsers.items():
            value = given.get(name)
            if value is not None:
                values[name] = parse(value, "--" + name.replace("_", "-")) if isinstance(value, str) else value
            elif env.get(PREFIX + name.upper(), "").strip():
                values[name] = parse(env[PREFIX + name.upper()], PREFIX + name.upper())
        values["sentry_dsn"] = env.get("SENTRY_DSN") or None
        settings = cls(**values)
        if (settings.tls_key or settings.tls_client_ca) and not settings.tls_cert:
            given_as = "--tls-key" if settings.tls_key else "--tls-client-ca"
            raise ConfigError(given_as, settings.tls_key or settings.tls_client_ca, "needs --tls-cert as well")
        return settings


def _fraction(text: str, setting: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(setting, text, "expected a fraction of the queue above 0, at most 1 (1: no limit)")
    return value


def tls_context(settings: ServeSettings) -> Optional[ssl.SSLContext]:
    """The server's SSL context, or None without ``--tls-cert``; a ConfigError for unusable files."""
    if not settings.tls_cert:
        return None
    return server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def guarded(app: WsgiApp, settings: ServeSettings) -> WsgiApp:
    """``app`` behind its tokens and per-sender limits (a :class:`Guard`), as ``settings`` ask.

    An unreadable or empty token file is a ConfigError naming the file (``serve`` refuses to start)."""
    tokens = TokenFile(settings.bearer_token_file) if settings.bearer_token_file else None
    health = TokenFile(settings.health_token, "--health-token") if settings.health_token else None
    limits = None
    sink = getattr(app, "sink", None)
    if settings.sender_limit_at < 1 and sink is not None and hasattr(sink, "queue_fill"):
        limits = SenderLimits(sink.queue_fill, threshold=settings.sender_limit_at)
    if tokens is None and health is None and limits is None:
        return app
    return Guard(app, tokens=tokens, health_tokens=health, limits=limits)


def exposure_warnings(settings: ServeSettings) -> list[str]:
    """What makes the listener unsafe to expose: beyond loopback without a token file or without TLS."""
    host = settings.listen[0]
    if host in ("localhost", "::1") or host.startswith("127."):
        return []
    warnings = []
    if not settings.bearer_token_file:
        warnings.append(
            f"serve listens on {host} (beyond loopback) without authentication: anyone who can reach the port "
            "can create Sentry events; set --bearer-token-file (OTEL_SENTRY_BRIDGE_BEARER_TOKEN_FILE)"
        )
    if not settings.tls_cert:
        warnings.append(
            f"serve listens on {host} (beyond loopback) without TLS: tokens and spans cross the network in "
            "clear text; set --tls-cert and --tls-key"
        )
    return warnings


def build_sink(
    settings: ServeSettings, *, environ: Optional[Mapping[str, str]] = None, at_exit: bool = False
) -> SentrySink:
    """The Sentry sink of ``settings``; a ConfigError when no span could ever be sent anywhere."""
    routes = Routes.load(settings.routes, settings.sentry_dsn)
    if settings.routes is None and routes.default is None:
        raise ConfigError("SENTRY_DSN", None, "serve needs SENTRY_DSN, or a routing file (--routes)")
    if not routes.dsns:
        logger.warning("otel-sentry-bridge serve: no route has a DSN; every span will be dropped")
    sink = SentrySink(
        routes,
        environ=environ,
        buffer_ttl=settings.buffer_ttl,
        root_delay=settings.root_delay,
        max_buffered_spans=settings.buffer_spans,
        max_buffered_bytes=settings.buffer_size,
    )
    if at_exit:
        atexit.register(sink.shutdown, settings.shutdown_timeout)
    return sink
