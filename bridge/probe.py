"""The sends of ``otel-sentry-bridge check``: one test trace, through the bridge's real conversion, to both
backends, each outcome in plain words.

The test trace is made by a real SDK ``TracerProvider`` with the bridge's resource: a SERVER span
``GET /otel-sentry-bridge/check`` that records a real exception, and one child. OTLP receives it encoded
by OpenTelemetry's own encoder; Sentry receives the transaction and the error exactly as the Sentry leg
builds them (assembler, converter, DSC, ``before_send``), each POSTed with the transport's own HTTP client,
synchronously, so the answer can be read and explained.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import socket
import ssl
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, cast
from urllib.parse import urlsplit

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.util.types import AttributeValue

from bridge.config import Options
from bridge.sentry.envelope import Envelope
from bridge.sentry.http import HttpClient, ProtocolError, Response
from bridge.sentry.transport import Build
from bridge.version import __version__

__all__ = ["Outcome", "TestTrace", "make_test_trace", "send_otlp", "send_otlp_metrics", "send_sentry", "CheckError"]

CLIENT = f"otel-sentry-bridge-check/{__version__}"
CHECK_ROUTE = "/otel-sentry-bridge/check"


class CheckError(Exception):
    """The exception the test trace records (its Sentry issue is titled by it)."""


@dataclass
class Outcome:
    """One send: ``ok`` (True), failed (False) or not attempted (None), and what to tell the user."""

    what: str
    ok: Optional[bool]
    message: str


@dataclass
class TestTrace:
    trace_id: int
    spans: Sequence[ReadableSpan]
    envelopes: list[tuple[str, Envelope]] = field(default_factory=list)  # ("transaction" | "error", envelope)
    lost: list[tuple[str, str]] = field(default_factory=list)  # (reason, category) the leg reported


def make_test_trace(options: Options) -> TestTrace:
    """Two finished spans (one with a real exception); no global state is touched."""
    from bridge.setup import build_resource

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON, resource=build_resource(options), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel-sentry-bridge.check", __version__)
    attributes: dict[str, AttributeValue] = {
        "http.request.method": "GET",
        "url.path": CHECK_ROUTE,
        "url.scheme": "http",
        "http.route": CHECK_ROUTE,
        "http.response.status_code": 500,
        "otel_sentry_bridge.check": True,
    }
    token = context_api.attach(context_api.Context())  # a fresh trace, whatever is current
    try:
        with tracer.start_as_current_span(
            f"GET {CHECK_ROUTE}", kind=trace_api.SpanKind.SERVER, attributes=attributes, record_exception=False
        ) as root:
            with tracer.start_as_current_span("otel-sentry-bridge check: child span"):
                pass
            try:
                raise CheckError("test error sent by 'otel-sentry-bridge check' (safe to resolve)")
            except CheckError as exc:
                root.record_exception(exc, attributes={"sentry.event_id": uuid.uuid4().hex})
                root.set_status(trace_api.Status(trace_api.StatusCode.ERROR, str(exc)))
    finally:
        context_api.detach(token)
    provider.shutdown()
    spans = exporter.get_finished_spans()
    return TestTrace(root.get_span_context().trace_id, spans)


# -- OTLP -------------------------------------------------------------------------------------------
def send_otlp(options: Options, trace: TestTrace, timeout: Optional[float] = None) -> Outcome:
    url = options.otlp_endpoint
    body = encode_spans(trace.spans).SerializePartialToString()
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": CLIENT, **dict(options.otlp_headers)}
    if options.otlp_compression == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif options.otlp_compression == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    what = f"OTLP test trace ({len(trace.spans)} spans) to {url}"
    response, problem = _post(url, body, headers, timeout or options.otlp_timeout)
    if response is None:
        return Outcome(what, False, f"{problem}{_otlp_hint(url)}")
    status = response.status
    if 200 <= status < 300:
        rejected, why = _partial_success(response.body)
        if rejected:
            return Outcome(what, False, f"the collector answered {status} but rejected {rejected} spans: {why}")
        return Outcome(what, True, f"the collector accepted it (HTTP {status})")
    return Outcome(what, False, f"the collector answered {status}: {_otlp_status(status, url, options)}")


def _partial_success(body: bytes) -> tuple[int, str]:
    try:
        message = ExportTraceServiceResponse.FromString(body)
    except Exception:
        return 0, ""
    return int(message.partial_success.rejected_spans), message.partial_success.error_message


def _otlp_status(status: int, url: str, options: Options) -> str:
    if status == 404:
        return (
            f"nothing at the path {urlsplit(url).path or '/'}; OTLP/HTTP traces go to /v1/traces "
            "(OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/traces appended, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is)"
        )
    if status in (401, 403):
        named = ", ".join(sorted(options.otlp_headers)) or "none"
        return f"the credentials were refused; check OTEL_EXPORTER_OTLP_HEADERS (headers sent: {named})"
    if status == 415:
        return "it does not take OTLP protobuf here; is this an OTLP/HTTP traces endpoint?"
    if status == 413:
        return "the request is too large for it"
    if status == 429 or status == 503:
        return "it is overloaded or throttling; the bridge retries such answers, but this check does not"
    if status >= 500:
        return "it failed internally; see the collector's own logs"
    return "unexpected answer to an OTLP export"


def _otlp_hint(url: str) -> str:
    port = urlsplit(url).port
    if port == 4317:
        return "; port 4317 is OTLP/gRPC's, the bridge speaks OTLP/HTTP: use port 4318"
    return ""


def send_otlp_metrics(options: Options, timeout: Optional[float] = None) -> Outcome:
    """One ``http.server.request.duration`` point for the check's route, as the metrics leg records it."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from bridge.metrics import ServerMetrics, temporality_for
    from bridge.setup import build_resource

    reader = InMemoryMetricReader(preferred_temporality=temporality_for(options.metrics_temporality))
    provider = MeterProvider(metric_readers=[reader], resource=build_resource(options), shutdown_on_exit=False)
    metrics = ServerMetrics.of(provider, _StabilityMode.HTTP)
    request = {"http.request.method": "GET", "url.scheme": "http", "http.route": CHECK_ROUTE}
    metrics.finish(metrics.begin(request), {**request, "http.response.status_code": 200}, None)
    data = reader.get_metrics_data()
    provider.shutdown()
    url = options.metrics_endpoint
    what = f"OTLP test metric point (http.server.request.duration) to {url}"
    if data is None:
        return Outcome(what, False, "nothing was recorded (the OpenTelemetry SDK is disabled?)")
    body = encode_metrics(data).SerializePartialToString()
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": CLIENT, **dict(options.metrics_headers)}
    if options.metrics_compression == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif options.metrics_compression == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    response, problem = _post(url, body, headers, timeout or options.metrics_timeout)
    if response is None:
        return Outcome(what, False, f"{problem}{_otlp_hint(url)}")
    status = response.status
    if 200 <= status < 300:
        try:
            partial = ExportMetricsServiceResponse.FromString(response.body).partial_success
            rejected, why = int(partial.rejected_data_points), partial.error_message
        except Exception:
            rejected, why = 0, ""
        if rejected:
            return Outcome(what, False, f"the collector answered {status} but rejected {rejected} points: {why}")
        return Outcome(what, True, f"the collector accepted it (HTTP {status})")
    if status in (404, 415):
        explained = (
            f"nothing takes metrics at {urlsplit(url).path or '/'}: the collector seems to have no metrics "
            "pipeline (add one), or the path is wrong (OTLP/HTTP metrics go to /v1/metrics); "
            "OTEL_METRICS_EXPORTER=none turns the metrics off"
        )
        return Outcome(what, False, f"the collector answered {status}: {explained}")
    return Outcome(what, False, f"the collector answered {status}: {_otlp_status(status, url, options)}")


# -- Sentry -----------------------------------------------------------------------------------------
class _Capture:
    """Stands where the Sentry leg's transport stands: keeps what the leg would send, and its losses."""

    def __init__(self, trace: TestTrace) -> None:
        self.trace = trace

    def submit(self, category: str, build: Build) -> bool:
        built = build()
        for envelope in [] if built is None else [built] if isinstance(built, Envelope) else built:
            self.trace.envelopes.append((category, envelope))
        return True

    def record_lost(self, reason: str, category: str, quantity: int = 1) -> None:
        self.trace.lost.append((reason, category))

    def is_rate_limited(self, category: str) -> bool:
        return False

    def flush(self, timeout: float) -> bool:
        return True

    def shutdown(self, timeout: float = 2.0) -> None:
        pass


def build_sentry_envelopes(options: Options, trace: TestTrace) -> None:
    """Run the spans through the real Sentry leg; its envelopes land in ``trace.envelopes``."""
    from bridge import dsc as dsc_module
    from bridge.sentry.leg import SentryLeg
    from bridge.setup import build_resource

    previous = dsc_module.current_head()
    options = dataclasses.replace(options, sample_rate=1.0)  # the test error is never sampled away
    leg = SentryLeg(options, build_resource(options), transport=cast(Any, _Capture(trace)))
    try:
        for span in trace.spans:
            leg.on_end(span)
    finally:
        dsc_module.clear_head(leg)
        if previous is not None:
            dsc_module.set_head(previous)


def send_sentry(options: Options, trace: TestTrace, timeout: float) -> list[Outcome]:
    assert options.dsn is not None
    dsn = options.dsn
    headers = {
        "Content-Type": "application/x-sentry-envelope",
        "Content-Encoding": "gzip",
        "X-Sentry-Auth": dsn.auth_header(CLIENT),
        "User-Agent": CLIENT,
    }
    outcomes: list[Outcome] = []
    for category in ("transaction", "error"):
        what = f"Sentry test {category} to {dsn.envelope_url}"
        envelopes = [envelope for kind, envelope in trace.envelopes if kind == category]
        if not envelopes:
            reasons = ", ".join(sorted({reason for reason, lost in trace.lost if lost == category})) or "no reason"
            outcomes.append(Outcome(what, None, f"not sent: the Sentry leg dropped it ({reasons})"))
            continue
        response, problem = _post(dsn.envelope_url, gzip.compress(envelopes[0].serialize()), headers, timeout)
        if response is None:
            outcomes.append(Outcome(what, False, problem))
        elif 200 <= response.status < 300:
            event_id = envelopes[0].headers.get("event_id")
            outcomes.append(Outcome(what, True, f"Sentry accepted it (HTTP {response.status}, event id {event_id})"))
        else:
            explained = _sentry_status(response, options)
            outcomes.append(Outcome(what, False, f"Sentry answered {response.status}: {explained}"))
    return outcomes


def _detail(response: Response, secret: str) -> str:
    """What the server said, if anything (the DSN's key masked, should it be echoed)."""
    try:
        detail = json.loads(response.body.decode("utf-8", "replace")).get("detail")
    except (ValueError, AttributeError):
        detail = response.body.decode("utf-8", "replace").strip()
    text = str(detail or "")[:200].replace(secret, secret[:4] + "****") if secret else str(detail or "")[:200]
    return f" (it said: {text})" if text else ""


def _sentry_status(response: Response, options: Options) -> str:
    assert options.dsn is not None
    project, status = options.dsn.project_id, response.status
    detail = _detail(response, options.dsn.public_key)
    if status == 401:
        return f"the request was not authenticated; the DSN's key was not accepted{detail}"
    if status == 403:
        return f"the key in SENTRY_DSN is not valid for project {project}{detail}"
    if status == 404:
        return (
            f"no project {project} at {options.dsn.netloc}{options.dsn.path or ''}; check the DSN's host, path and "
            f"project id{detail}"
        )
    if status == 400:
        return f"the envelope was refused as invalid{detail}"
    if status == 413:
        return f"the envelope is too large{detail}"
    if status == 429:
        limits = response.headers.get("x-sentry-rate-limits") or response.headers.get("retry-after") or "?"
        return f"the project or key is rate-limited or over quota (limits: {limits}){detail}"
    if status >= 500:
        return f"Sentry failed internally; try again later{detail}"
    return f"unexpected answer{detail}"


# -- HTTP -------------------------------------------------------------------------------------------
def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[Optional[Response], str]:
    """POST with instrumentation suppressed; (response, "") or (None, what went wrong in plain words)."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    token = context_api.attach(context_api.set_value(context_api._SUPPRESS_INSTRUMENTATION_KEY, True))
    client = HttpClient(url, timeout=timeout)
    try:
        return client.send(body, headers), ""
    except socket.gaierror:
        return None, f"the host name {parts.hostname!r} does not resolve (DNS)"
    except ConnectionRefusedError:
        return None, f"nothing listens at {where} (connection refused)"
    except TimeoutError:
        return None, f"no answer from {where} within {timeout:g} s"
    except ssl.SSLError as exc:
        return None, f"TLS with {where} failed: {exc.reason or exc}"
    except ProtocolError as exc:
        return None, f"{where} did not answer in HTTP/1.1 ({exc})"
    except OSError as exc:
        return None, f"could not talk to {where}: {exc.strerror or exc}"
    finally:
        client.close()
        context_api.detach(token)
