"""OTLP JSON → ``ExportTraceServiceRequest``, as the OTLP/HTTP specification encodes it.

OTLP JSON is protobuf's JSON mapping with three differences: keys in lowerCamelCase (protobuf's parser
takes those and the original names), enums as integers (it takes both), and trace and span ids as **hex**
strings where protobuf's mapping has base64 for ``bytes`` fields. So the ids of spans and links are
turned from hex into base64 here, before ``json_format.ParseDict`` reads the rest. A span with an id
that is not hex is left out and counted as rejected; unknown fields are ignored, as the spec requires.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bridge.receiver.decode import Decoded, DecodeError, spans_from_request

__all__ = ["decode_json", "parse_json_request", "json_items"]

_SPAN_IDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
_LINK_IDS = ("traceId", "trace_id", "spanId", "span_id")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def decode_json(body: bytes) -> Decoded:
    request, bad_ids = parse_json_request(body)
    decoded = spans_from_request(request)
    for problem, count in bad_ids.items():
        decoded.reject(problem, count)
    return decoded


def parse_json_request(body: bytes) -> tuple[ExportTraceServiceRequest, Counter[str]]:
    """The request, and the problems of the spans left out for ids that are not hex."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError("an OTLP JSON request must be a JSON object")
    bad_ids: Counter[str] = Counter()
    for resource_spans in json_items(document, "resourceSpans", "resource_spans"):
        for scope_spans in json_items(resource_spans, "scopeSpans", "scope_spans"):
            spans = scope_spans.get("spans")
            if isinstance(spans, list):
                scope_spans["spans"] = [span for span in spans if _hex_ids_to_base64(span, bad_ids)]
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest in JSON: {exc}") from None
    return request, bad_ids


def json_items(parent: Any, *keys: str) -> list[dict[str, Any]]:
    """The dict elements of the first list found under ``keys`` (anything else is left to ParseDict)."""
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


def _hex_ids_to_base64(span: Any, bad_ids: Counter[str]) -> bool:
    """Rewrite the span's (and its links') hex ids in place; False when the span must be left out."""
    if not isinstance(span, dict):
        return True  # ParseDict refuses it, and with it the request
    for key in _SPAN_IDS:
        if not _convert(span, key):
            bad_ids[f"invalid {key}: OTLP JSON ids are hex strings"] += 1
            return False
    links = span.get("links")
    if isinstance(links, list):
        span["links"] = [
            link for link in links if not isinstance(link, dict) or all(_convert(link, k) for k in _LINK_IDS)
        ]
    return True


def _convert(holder: dict[str, Any], key: str) -> bool:
    value = holder.get(key)
    if value is None:
        return True
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        return False
    holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return True
