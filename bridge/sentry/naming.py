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
    "celery_context",
    "mechanism_for",
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


# Celery tasks as opentelemetry-instrumentation-celery records them (``celery.action``: ``run`` on the
# worker's CONSUMER span, ``apply_async`` on the caller's PRODUCER span), named as sentry-sdk names them.
_CELERY_OPS: Final = {"run": "queue.task.celery", "apply_async": "queue.submit.celery"}
# Celery's control-flow outcomes (a retry, Ignore, Reject): sentry-sdk reports the run as ``aborted``.
_CELERY_ABORTED: Final = frozenset({"RETRY", "IGNORED", "REJECTED"})


def _celery_task(attributes: Mapping[str, Any]) -> str | None:
    """The task name of a Celery worker span (``celery.action`` ``run``), else None."""
    if attributes.get("celery.action") != "run":
        return None
    name = attributes.get("celery.task_name")
    return name if isinstance(name, str) and name else None


def celery_context(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """Sentry's ``contexts.celery`` of a Celery worker span: task name and id, retries, queue."""
    task = _celery_task(attributes)
    if task is None:
        return None
    context: dict[str, Any] = {"task_name": task[:MAX_VALUE_CHARS]}
    task_id = first_str(attributes, "messaging.message.id")
    if task_id:
        context["task_id"] = task_id[:MAX_VALUE_CHARS]
    retries = attributes.get("celery.retries", 0)
    context["retries"] = retries if isinstance(retries, int) and not isinstance(retries, bool) else 0
    queue = first_str(attributes, "messaging.destination.name", "messaging.destination")
    if queue:
        context["queue"] = queue[:MAX_VALUE_CHARS]
    return context


def mechanism_for(attributes: Mapping[str, Any]) -> str | None:
    """The mechanism type of an unhandled exception recorded on a span with these attributes, if it says."""
    named = attributes.get("sentry.mechanism")
    if isinstance(named, str) and named:
        return named[:MAX_VALUE_CHARS]
    return "celery" if _celery_task(attributes) else None


def status_for(attributes: Mapping[str, Any], status_code: StatusCode | None) -> str:
    """The HTTP status when there is one, else OTel's: OK/UNSET → ``ok``, ERROR → ``internal_error``."""
    if attributes.get("celery.state") in _CELERY_ABORTED:
        return "aborted"
    code = http_status(attributes)
    if code is not None:
        return status_for_http(code)
    return "internal_error" if status_code == StatusCode.ERROR else "ok"


def op_for(attributes: Mapping[str, Any], kind: SpanKind | None) -> str:
    """``sentry.op`` wins; then http.server/http.client (by kind), db, rpc, message, faas.trigger, default."""
    op = attributes.get("sentry.op")
    if isinstance(op, str) and op:
        return op
    action = attributes.get("celery.action")
    if isinstance(action, str) and action in _CELERY_OPS:
        return _CELERY_OPS[action]
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
    task = _celery_task(attributes)
    if task is not None:
        return task[:MAX_VALUE_CHARS], "task"
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
