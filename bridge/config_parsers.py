"""The parsers of ``bridge.config``: (setting name, raw value) -> value, each raising
:class:`~bridge.errors.ConfigError` (naming the setting and the value) or warning and falling back, as the
ecosystem that owns the variable says."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from bridge.errors import ConfigError

__all__ = [
    "TEMPORALITY_NAMES",
    "as_text",
    "otel_bool",
    "sentry_bool",
    "rate",
    "positive_float",
    "warn_int",
    "temporality",
    "http_url",
    "compression",
    "comma_list",
    "name_list",
    "key_values",
    "resource_attributes",
    "headers",
]

logger = logging.getLogger("bridge.config")  # the messages are the configuration's, wherever they are parsed

TEMPORALITY_NAMES = ("cumulative", "delta", "lowmemory")  # OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE

# Sentry's env_to_bool: these spellings, case-insensitive; anything else means "not set".
_SENTRY_TRUE = {"true", "1", "yes", "on", "t", "y"}
_SENTRY_FALSE = {"false", "0", "no", "off", "f", "n"}


def as_text(name: str, value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def otel_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        # OTel specification: only "true" (any case) is true; anything else is false, with a warning.
        logger.warning("%s=%r is not 'true' or 'false'; treating it as false", name, value)
    return text == "true"


def sentry_bool(default: bool) -> Callable[[str, Any], bool]:
    def parse(name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _SENTRY_TRUE:
            return True
        if text in _SENTRY_FALSE:
            return False
        raise ConfigError(name, value, "expected a boolean: true/false, 1/0, yes/no, on/off")

    return parse


def rate(name: str, value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "expected a number between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(name, value, "a sample rate must be between 0 and 1")
    return rate


def positive_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "expected a number of seconds") from None
    if number <= 0:
        raise ConfigError(name, value, "must be greater than 0")
    return number


def warn_int(default: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(value)
            if number <= 0:
                raise ValueError
            return number
        except (TypeError, ValueError):
            if name.startswith("OTEL_"):  # OTel specification: warn and use the default
                logger.warning("%s=%r is not a positive integer; using %d", name, value, default)
                return default
            raise ConfigError(name, value, "expected a positive integer") from None

    return parse


def temporality(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in TEMPORALITY_NAMES:
        raise ConfigError(name, value, f"expected one of {', '.join(TEMPORALITY_NAMES)}")
    return text


def http_url(setting: str, url: Any, what: str) -> str:
    if not isinstance(url, str):
        raise ConfigError(setting, url, f"{what} must be an http:// or https:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(setting, url, f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(setting, url, f"{what} must be an http:// or https:// URL with a host")
    return url


def compression(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("gzip", "none", "deflate"):
        raise ConfigError(name, value, "expected gzip, deflate or none")
    return text


def comma_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)


def name_list(name: str, value: Any) -> tuple[str, ...]:
    return tuple(part.lower() for part in comma_list(name, value))


def key_values(name: str, value: str) -> dict[str, str]:
    """W3C-baggage-like ``k=v,k2=v2`` with percent-decoding; raises ValueError on a malformed entry."""
    result: dict[str, str] = {}
    for entry in value.split(","):
        if not entry.strip():
            continue
        key, sep, val = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(entry)
        result[unquote(key.strip())] = unquote(val.strip())
    return result


def resource_attributes(name: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    try:
        return key_values(name, str(value))
    except ValueError as bad:
        # OTel specification: on a parse error the whole value is discarded, with a warning.
        logger.warning("%s=%r has a malformed entry %r; ignoring the variable", name, value, str(bad))
        return {}


def headers(name: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k).lower(): str(v) for k, v in value.items()}
    try:
        return {k.lower(): v for k, v in key_values(name, str(value)).items()}
    except ValueError as bad:
        raise ConfigError(
            name, "<hidden>", f"malformed entry {str(bad).split('=')[0]!r}: expected key=value,..."
        ) from None
