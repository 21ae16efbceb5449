"""What every Sentry event made from a span shares: options, ids, times, and the parts read from the resource
(environment, release, platform, runtime) and from span attributes (request, user, tags).

Resource-derived parts are computed once per resource (a tiny identity-keyed cache), not per event.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import os
import platform as _platform
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bridge.sentry import privacy

__all__ = [
    "ConvertOptions",
    "ResourceView",
    "base_event",
    "event_id",
    "first_str",
    "plain",
    "resource_view",
    "request_context",
    "seconds",
    "span_hex",
    "tags_for",
    "trace_hex",
    "user_for",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvertOptions:
    environment: str | None = None  # SENTRY_ENVIRONMENT if set; else resource deployment.environment(.name)
    release: str | None = None  # SENTRY_RELEASE if set; else resource service.version
    send_default_pii: bool = False
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()
    project_root: str | None = None  # abs paths under it (not in site-packages/dist-packages) are in-app
    server_name: str | None = None
    sdk_name: str = "otel-sentry-bridge"
    sdk_version: str = "0.1.0"


# telemetry.sdk.language (OpenTelemetry's values) → Sentry platform.
PLATFORMS: Final = {
    "python": "python",
    "java": "java",
    "nodejs": "node",
    "javascript": "node",
    "webjs": "javascript",
    "go": "go",
    "dotnet": "csharp",
    "ruby": "ruby",
    "php": "php",
    "cpp": "native",
    "rust": "native",
    "swift": "cocoa",
    "erlang": "elixir",
}

MAX_TAG_CHARS: Final = 200
_TAG_KEY_BAD = re.compile(r"[^a-zA-Z0-9_.:-]")
_RELEASE_BAD = re.compile(r"[\r\n\t\f\v/\\]")
_METHOD = re.compile(r"[A-Za-z_-]{3,32}")
_KNOWN_METHODS: Final = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"))


@dataclass(frozen=True)
class ResourceView:
    """Everything an event takes from one resource (and the options), computed once."""

    environment: str
    release: str | None
    platform: str
    language: str | None  # telemetry.sdk.language as given, for the stack-trace parser
    server_name: str | None
    resource: dict[str, Any]
    runtime: dict[str, str] | None
    os: dict[str, str] | None
    tags: dict[str, str]


def _clean_environment(value: Any) -> str | None:
    """Relay refuses environments with '/', line breaks, or over 64 characters: repair, don't lose the event."""
    if not isinstance(value, str) or not value.strip():
        return None
    cleaned = _RELEASE_BAD.sub("-", value.strip())[:64]
    return None if cleaned == "None" else cleaned


def _clean_release(value: Any) -> str | None:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text or text in (".", ".."):
        return None
    return _RELEASE_BAD.sub("-", text)[:200]


def _runtime(resource: Mapping[str, Any], language: str | None) -> dict[str, str] | None:
    name = resource.get("process.runtime.name")
    version = resource.get("process.runtime.version")
    if isinstance(name, str) and isinstance(version, str):
        return {"name": name, "version": version}
    if language == "python":
        # Spans of this process (or another Python one without a runtime detector): this interpreter.
        return {"name": _platform.python_implementation(), "version": _platform.python_version()}
    return None


def _os(resource: Mapping[str, Any]) -> dict[str, str] | None:
    context = {}
    for key, target in (("os.type", "name"), ("os.version", "version"), ("os.description", "raw_description")):
        value = resource.get(key)
        if isinstance(value, str) and value:
            context[target] = value
    return context or None


def _compute_view(resource: Mapping[str, Any], options: ConvertOptions) -> ResourceView:
    language = resource.get("telemetry.sdk.language")
    language = language if isinstance(language, str) else None
    environment = (
        _clean_environment(options.environment)
        or _clean_environment(resource.get("deployment.environment.name"))
        or _clean_environment(resource.get("deployment.environment"))
        or "production"
    )
    release = _clean_release(options.release) or _clean_release(resource.get("service.version"))
    server_name = options.server_name or resource.get("host.name")
    tags = {}
    service = resource.get("service.name")
    if isinstance(service, str) and service:
        tags["service.name"] = clean_tag_value(service)
    return ResourceView(
        environment=environment,
        release=release,
        platform=PLATFORMS.get(language or "", "other"),
        language=language,
        server_name=server_name if isinstance(server_name, str) and server_name else None,
        resource=privacy.filter_attributes(resource, options.send_default_pii),
        runtime=_runtime(resource, language),
        os=_os(resource),
        tags=tags,
    )


_views: dict[int, tuple[Mapping[str, Any], ConvertOptions, ResourceView]] = {}
_MAX_VIEWS: Final = 32


def resource_view(resource: Mapping[str, Any] | None, options: ConvertOptions) -> ResourceView:
    """The view of ``resource`` (its attributes mapping), cached by the identity of it and of ``options``.

    SDK resources are immutable and live as long as their provider, so identity is a sound key; the cache
    keeps a reference to each key object, so an id is never reused while its entry exists.
    """
    resource = resource if resource is not None else _EMPTY
    entry = _views.get(id(resource))
    if entry is not None and entry[0] is resource and (entry[1] is options or entry[1] == options):
        return entry[2]
    view = _compute_view(resource, options)
    if len(_views) >= _MAX_VIEWS:
        _views.clear()
    _views[id(resource)] = (resource, options, view)
    return view


_EMPTY: Final[Mapping[str, Any]] = {}


def trace_hex(trace_id: int) -> str:
    """32 lowercase hex digits; an invalid (zero) id is replaced by a random one so Sentry keeps the event."""
    if not trace_id:
        logger.debug("span with an all-zero trace id: using a random one")
        return uuid.uuid4().hex
    return f"{trace_id & 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:032x}"


def span_hex(span_id: int) -> str:
    if not span_id:
        logger.debug("span with an all-zero span id: using a random one")
        return uuid.uuid4().hex[:16]
    return f"{span_id & 0xFFFFFFFFFFFFFFFF:016x}"


def plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy of span attributes. The SDK hands out a ``MappingProxyType`` over its
    ``BoundedAttributes``, whose ``copy()`` is one C-level dict copy; ``dict(proxy)`` would go key by key
    through the Mapping protocol (six times slower for a request's ten attributes)."""
    if not attributes:
        return {}
    copy = getattr(attributes, "copy", None)
    if copy is not None:
        copied = copy()
        if type(copied) is dict:
            return copied
    return dict(attributes)


def seconds(nanoseconds: int | None) -> float:
    return (nanoseconds or 0) / 1e9


def first_str(attributes: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` whose value is a non-empty string (numbers are turned into text)."""
    get = attributes.get
    for key in keys:
        value = get(key)
        if value is None:
            continue
        if isinstance(value, str):
            if value:
                return value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    return None


_VERSION_4 = (0xF000 << 64, 0x4000 << 64)  # (mask, value) of the version nibble
_VARIANT = (0xC000 << 48, 0x8000 << 48)  # (mask, value) of the RFC 4122 variant bits


# A private generator: an app that calls random.seed() must not make event ids repeat (across runs, or
# across workers forked from one master: it is reseeded from os.urandom in every fork() child).
_ids = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


def event_id() -> str:
    """A random (version 4) UUID as 32 hex digits, drawn like OpenTelemetry's trace and span ids
    (``getrandbits``, of a private ``random.Random``). Not ``uuid.uuid4()``: ``os.urandom`` releases the
    GIL for its system call, and a thread that gives the GIL up in a busy process waits up to the switch
    interval (5 ms) to get it back: a stall per event on the Sentry worker, or per error on the request
    thread. Event ids need to be unique, not unguessable (they are sent in clear alongside the event)."""
    value = _ids.getrandbits(128)
    value = (value & ~_VERSION_4[0]) | _VERSION_4[1]
    value = (value & ~_VARIANT[0]) | _VARIANT[1]
    return f"{value:032x}"


def base_event(view: ResourceView, options: ConvertOptions) -> dict[str, Any]:
    """The fields every error, message and transaction event starts with."""
    event: dict[str, Any] = {
        "event_id": event_id(),
        "platform": view.platform,
        "environment": view.environment,
        "sdk": {"name": options.sdk_name, "version": options.sdk_version},
    }
    if view.release:
        event["release"] = view.release
    if view.server_name:
        event["server_name"] = view.server_name
    return event


def clean_tag_value(value: str) -> str:
    return " ".join(value.split())[:MAX_TAG_CHARS] if value else value


def clean_tag_key(key: str) -> str:
    return _TAG_KEY_BAD.sub("_", key)[:MAX_TAG_CHARS]


def tags_for(attributes: Mapping[str, Any], view: ResourceView) -> dict[str, str]:
    """Tags: the service name from the resource and user-chosen ``sentry.tag.<key>`` attributes (200 chars)."""
    tags = dict(view.tags)
    for key, value in attributes.items():
        if key.startswith("sentry.tag.") and len(key) > 11 and value is not None:
            text = clean_tag_value(value if isinstance(value, str) else str(value))
            if text:
                tags[clean_tag_key(key[11:])] = text
    return tags


_IP_KEYS: Final = ("client.address", "http.client_ip", "net.peer.ip", "network.peer.address", "net.sock.peer.addr")


def client_ip(attributes: Mapping[str, Any]) -> str | None:
    for key in _IP_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            candidate = value.split(",")[0].strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                continue
    return None


_FORWARDED_KEYS: Final = ("http.request.header.x_forwarded_for", "http.request.header.x_real_ip")


def user_ip(attributes: Mapping[str, Any]) -> str | None:
    """The user's IP as sentry-sdk finds it: the first ``X-Forwarded-For`` address, else ``X-Real-IP`` (when
    those headers are captured), else the client address."""
    for key in _FORWARDED_KEYS:
        value = attributes.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            try:
                return str(ipaddress.ip_address(value.split(",")[0].strip()))
            except ValueError:
                continue
    return client_ip(attributes)


def user_for(attributes: Mapping[str, Any], send_default_pii: bool) -> dict[str, str] | None:
    """``enduser.id``/``user.id`` → id, ``user.email``, ``user.name`` → username; the IP only with PII."""
    get = attributes.get
    if not send_default_pii and (
        get("enduser.id") is None and get("user.id") is None and get("user.email") is None and get("user.name") is None
    ):
        return None  # most spans: none of the keys (read at once, without the loop's calls)
    user = {}
    for target, keys in (("id", ("enduser.id", "user.id")), ("email", ("user.email",)), ("username", ("user.name",))):
        value = first_str(attributes, *keys)
        if value:
            user[target] = value[: privacy.MAX_VALUE_CHARS]
    if send_default_pii:
        ip = user_ip(attributes)
        if ip:
            user["ip_address"] = ip
    return user or None


@functools.lru_cache(maxsize=1024)
def _header_name(raw: str) -> str:
    return "-".join(part.capitalize() for part in raw.replace("_", "-").split("-"))


def _port(attributes: Mapping[str, Any]) -> int | None:
    for key in ("server.port", "net.host.port"):
        value = attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _has_port(host: str) -> bool:
    """OTel's WSGI instrumentation puts the Host header, port and all, in ``server.address``."""
    if host.startswith("["):  # an IPv6 literal: [::1]:8000
        return "]:" in host
    name, colon, port = host.rpartition(":")
    return bool(colon) and ":" not in name and port.isdigit()


def merge_request_headers(request: dict[str, Any], headers: Mapping[str, str], send_default_pii: bool) -> None:
    """Add the request's own headers (read in-process) to a Sentry ``request``, masked as the rest is.
    Headers already there (from the span's captured ``http.request.header.*``) are kept as they are."""
    merged: dict[str, str] = request.setdefault("headers", {})
    present = {name.lower() for name in merged}
    for name, value in headers.items():
        if name.lower() in present:
            continue
        if not send_default_pii and privacy.is_sensitive_header(name):
            merged[name] = privacy.FILTERED
        else:
            merged[name] = str(value)[: privacy.MAX_VALUE_CHARS]


def request_context(attributes: Mapping[str, Any], send_default_pii: bool) -> dict[str, Any] | None:
    """Sentry's ``request`` interface from HTTP server attributes (old and new semantic conventions).

    ``{method, url (no query), query_string, headers, env: {SERVER_NAME, SERVER_PORT}}``; never bodies.
    None when the attributes describe no HTTP request.
    """
    get = attributes.get
    # Each lookup below takes the first key's value when it is a non-empty string (what a request span of
    # OpenTelemetry's instrumentations has) and asks first_str only otherwise: the same result, a call less.
    method = get("http.request.method")
    if method.__class__ is not str or not method:
        method = first_str(attributes, "http.request.method", "http.method")
        if method is None:
            return None
    if method == "_OTHER":
        method = first_str(attributes, "http.request.method_original") or method
    request: dict[str, Any] = {}
    if method in _KNOWN_METHODS or _METHOD.fullmatch(method):  # what Relay accepts; others stay in the data
        request["method"] = method.upper()
    pii = send_default_pii
    full = get("url.full")
    if full is None:  # usually absent on server spans, as is the old key
        full = get("http.url")
    if full is not None and (full.__class__ is not str or not full):
        full = first_str(attributes, "url.full", "http.url")
    query = get("url.query")
    if query is not None and (query.__class__ is not str or not query):
        query = first_str(attributes, "url.query")
    host = get("server.address")
    if host.__class__ is not str or not host:
        host = first_str(attributes, "server.address", "net.host.name", "http.server_name")
    port = _port(attributes)
    scheme = get("url.scheme")
    if scheme.__class__ is not str or not scheme:
        scheme = first_str(attributes, "url.scheme", "http.scheme") or "http"
    if full:
        base, _, full_query = full.partition("?")
        url = base.partition("#")[0]
        query = query if query is not None else full_query
        if not pii:
            url = privacy.scrub_url(url)
    else:
        path = get("url.path")
        if path.__class__ is not str or not path:
            path = first_str(attributes, "url.path")
        if path is None:
            target = first_str(attributes, "http.target") or ""
            path, _, target_query = target.partition("?")
            query = query if query is not None else target_query
        authority = first_str(attributes, "http.host")
        if authority is None and host:
            default = 443 if scheme == "https" else 80
            authority = host if port in (None, default) or _has_port(host) else f"{host}:{port}"
        url = f"{scheme}://{authority}{path}" if authority else path
    if url:
        request["url"] = url[: privacy.MAX_VALUE_CHARS]
    if query:
        request["query_string"] = (query if pii else privacy.scrub_query(query))[: privacy.MAX_VALUE_CHARS]
    headers: dict[str, str] = {}
    for key, value in attributes.items():
        if key.startswith("http.request.header."):
            raw = key[20:]
            if not pii and privacy.is_sensitive_header(raw):
                text = privacy.FILTERED
            elif isinstance(value, (list, tuple)):
                text = ", ".join(str(item) for item in value)
            else:
                text = str(value)
            headers[_header_name(raw)] = text[: privacy.MAX_VALUE_CHARS]
    agent = get("user_agent.original")
    if agent.__class__ is not str or not agent:
        agent = first_str(attributes, "user_agent.original", "http.user_agent")
    if agent and "User-Agent" not in headers:
        headers["User-Agent"] = agent[: privacy.MAX_VALUE_CHARS]
    if headers:
        request["headers"] = headers
    env: dict[str, str] = {}
    if host:
        env["SERVER_NAME"] = host
    if port is not None:
        env["SERVER_PORT"] = str(port)
    if pii:
        ip = client_ip(attributes)
        if ip:
            env["REMOTE_ADDR"] = ip
    if env:
        request["env"] = env
    return request
