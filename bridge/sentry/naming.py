"""Transaction names, span ops, descriptions and statuses: the rules of docs/conversion.md.

Each rule reads old and new HTTP/database semantic conventions alike. The attribute-level functions are used
where no span exists (errors of unsampled requests); the span-level ones are the public contract.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.trace import SpanKind, StatusCode

from bridge.sentry.context import first_str
from bridge.sentry.privacy import MAX_VALUE_CHARS

__all__ = [
    "TRANSACTION_SOURCES",
    "description_for",
    "http_method",
    "http_status",
    "name_for",
    "op_for",
    "status_for",
    "status_for_http",
    "url_path",
]

# Sources Sentry knows (transaction_info.source).
TRANSACTION_SOURCES: Final = frozenset({"custom", "url", "route", "view", "component", "task"})
# Names that say nothing: never used as a transaction name.
_MEANINGLESS_NAMES: Final = frozenset({"", "generic WSGI request", "HTTP"})
UNLABELED: Final = "<unlabeled transaction>"

_STATUS_BY_CODE: Final = {
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    413: "failed_precondition",
    429: "resource_exhausted",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}


def http_method(attributes: Mapping[str, Any]) -> str | None:
    """The request's method, as sent (``_OTHER`` resolved); None when there is none or it is blank."""
    method = first_str(attributes, "http.request.method", "http.method")
    if method == "_OTHER":
        original = first_str(attributes, "http.request.method_original")
        if original and original.strip():
            method = original
    return method.strip() or None if method else None


def _strip_query(text: str) -> str:
    return text.split("?", 1)[0].split("#", 1)[0]


def url_path(attributes: Mapping[str, Any]) -> str | None:
    """The request path without its query: ``url.path``, else ``http.target``, else from the full URL."""
    path = first_str(attributes, "url.path")
    if path:
        return path
    target = first_str(attributes, "http.target")
    if target:
        return _strip_query(target)
    full = first_str(attributes, "url.full", "http.url")
    if full:
        rest = _strip_query(full).partition("://")[2]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return None


def _url_without_query(attributes: Mapping[str, Any]) -> str | None:
    full = first_str(attributes, "url.full", "http.url")
    if not full:
        return None
    url = _strip_query(full)
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}" if sep else url


def _drop_method(route: str, method: str) -> str:
    """Some frameworks put the method into the route ("GET /x"): never make "GET GET /x"."""
    head, sep, tail = route.partition(" ")
    return tail if sep and head.upper() == method.upper() else route


def http_status(attributes: Mapping[str, Any]) -> int | None:
    for key in ("http.response.status_code", "http.status_code"):
        value = attributes.get(key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def status_for_http(code: int) -> str:
    if code < 400:
        return "ok"
    known = _STATUS_BY_CODE.get(code)
    if known:
        return known
    return "invalid_argument" if code < 500 else "internal_error"


def status_for(attributes: Mapping[str, Any], status_code: StatusCode | None) -> str:
    """The HTTP status when there is one, else OTel's: OK/UNSET → ``ok``, ERROR → ``internal_error``."""
    code = http_status(attributes)
    if code is not None:
        return status_for_http(code)
    return "internal_error" if status_code == StatusCode.ERROR else "ok"


def op_for(attributes: Mapping[str, Any], kind: SpanKind | None) -> str:
    """``sentry.op`` wins; then http.server/http.client (by kind), db, rpc, message, faas.trigger, default."""
    op = attributes.get("sentry.op")
    if isinstance(op, str) and op:
        return op
    if http_method(attributes):
        if kind == SpanKind.SERVER:
            return "http.server"
        return "http.client" if kind == SpanKind.CLIENT else "http"
    if first_str(attributes, "db.system.name", "db.system"):
        return "db"
    if first_str(attributes, "rpc.system"):
        return "rpc"
    if first_str(attributes, "messaging.system"):
        return "message"
    trigger = first_str(attributes, "faas.trigger")
    return trigger or "default"


def description_for(attributes: Mapping[str, Any], kind: SpanKind | None, name: str) -> str:
    """db: the query text; http: ``METHOD route-or-path`` (client spans: ``METHOD url``), no query; else name."""
    if first_str(attributes, "db.system.name", "db.system"):
        statement = first_str(attributes, "db.query.text", "db.statement")
        return (statement or name)[:MAX_VALUE_CHARS]
    method = http_method(attributes)
    if method:
        target = None
        if kind == SpanKind.CLIENT:
            # Sentry's own http.client spans name the URL (its N+1 API call detector reads the host).
            target = _url_without_query(attributes)
        target = target or first_str(attributes, "http.route") or url_path(attributes)
        if target:
            return f"{method} {_drop_method(target, method)}"[:MAX_VALUE_CHARS]
    return name[:MAX_VALUE_CHARS]


def name_for(attributes: Mapping[str, Any], span_name: str) -> tuple[str, str]:
    """(transaction name, source): a named view (``sentry.transaction_source``), else ``METHOD route``
    (``route``), else ``METHOD path`` (``url``), else the span name (``custom``)."""
    name = span_name.strip() if isinstance(span_name, str) else ""
    source = attributes.get("sentry.transaction_source")
    if isinstance(source, str) and source in TRANSACTION_SOURCES and name not in _MEANINGLESS_NAMES:
        return name[:MAX_VALUE_CHARS], source
    method = http_method(attributes)
    if method:
        route = first_str(attributes, "http.route")
        if route:
            return f"{method} {_drop_method(route, method)}"[:MAX_VALUE_CHARS], "route"
        path = url_path(attributes)
        if path:
            return f"{method} {path}"[:MAX_VALUE_CHARS], "url"
    if name in _MEANINGLESS_NAMES:
        name = (method or "").strip() or UNLABELED  # a method of blanks ("\r") names nothing either
    return name[:MAX_VALUE_CHARS], "custom"
