"""Breadcrumbs from the outgoing HTTP calls and database queries that show up as child spans, as sentry-sdk
records them: ``{"type": "http", "category": "httplib", "data": {"url", "http.method",
"http.response.status_code", "http.query", "http.fragment"}}`` (level warning for 4xx, error for 5xx) and
``{"category": "query", "message": <the statement>, "data": {"db.system": ...}}``. A span processor, so it
works with whatever OpenTelemetry instrumentation (requests, urllib, httpx, DB-API...) made the span; the
crumb goes to the isolation scope of the thread that ends the span.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from bridge.sentry.context import plain

__all__ = ["BreadcrumbSpanProcessor", "crumb_for"]

logger = logging.getLogger(__name__)


def _first(attributes: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def crumb_for(span: ReadableSpan) -> Optional[dict[str, Any]]:
    """The breadcrumb sentry-sdk would have recorded for this span, or None."""
    attributes = plain(span.attributes)  # one C-level copy: the SDK's proxy answers a missing key by an exception
    method = _first(attributes, "http.request.method", "http.method") if span.kind == SpanKind.CLIENT else None
    statement = None if method else _first(attributes, "db.query.text", "db.statement")
    if not method and statement is None:
        return None
    timestamp = (span.end_time or span.start_time or 0) / 1e9 or None
    if method:
        url = str(_first(attributes, "url.full", "http.url") or "")
        base, _, query = url.partition("?")
        query, _, fragment = query.partition("#")
        if not query:
            base, _, fragment = base.partition("#")
        data: dict[str, Any] = {"http.method": str(method), "url": base, "http.query": query, "http.fragment": fragment}
        status = _first(attributes, "http.response.status_code", "http.status_code")
        crumb: dict[str, Any] = {"type": "http", "category": "httplib", "data": data, "timestamp": timestamp}
        if isinstance(status, int):
            data["http.response.status_code"] = status
            if 500 <= status <= 599:
                crumb["level"] = "error"
            elif 400 <= status <= 499:
                crumb["level"] = "warning"
        return crumb
    system = _first(attributes, "db.system.name", "db.system")
    if system is not None and statement is not None:
        return {"category": "query", "message": str(statement), "data": {"db.system": str(system)},
                "timestamp": timestamp}  # fmt: skip
    return None


class BreadcrumbSpanProcessor(SpanProcessor):
    """Adds the crumb of each finished HTTP client or database span; never raises."""

    def on_start(self, span: Any, parent_context: Optional[context_api.Context] = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            crumb = crumb_for(span)
            if crumb is not None:
                from bridge import scopes

                scopes.get_isolation_scope().add_breadcrumb(crumb, hint={"span": span})
        except Exception:
            logger.debug("otel-sentry-bridge: no breadcrumb for a span", exc_info=True)
