"""SentryPropagator with OpenTelemetry's real W3C propagators in the composite the bridge builds."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Optional

import pytest
from opentelemetry import baggage as baggage_api
from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision

from bridge.config import Options
from bridge.dsc import Incoming, incoming_from, merge_baggage, sentry_items
from bridge.propagation import SentryPropagator, parse_sentry_trace
from bridge.sampling import build_sampler
from bridge.setup import build_propagator

TRACE = "771a43a4192642f0b136d5159a501700"
SPAN = "b7ad6b7169203331"
W3C_TRACE = "0af7651916cd43dd8448eb211c80319c"
UPSTREAM_BAGGAGE = (
    "other-vendor=abc,sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key=49d0f7386ad645858ae85020e393bef3,"
    "sentry-sample_rate=0.25,sentry-sampled=true,sentry-sample_rand=0.123456,sentry-environment=staging,"
    "sentry-release=web%401.2.3,sentry-transaction=Checkout%20page"
)


def composite(names: str = "tracecontext,baggage,sentry_bridge") -> TextMapPropagator:
    return build_propagator(Options.resolve({"propagators": names}, environ={}))


def remote_parent(context: context_api.Context) -> trace_api.SpanContext:
    return trace_api.get_current_span(context).get_span_context()


# -- extract ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "sampled"), [(f"{TRACE}-{SPAN}-1", True), (f"{TRACE}-{SPAN}-0", False), (f" {TRACE}-{SPAN} ", None)]
)
def test_sentry_trace_alone_continues_the_trace(header: str, sampled: Optional[bool]) -> None:
    context = composite().extract({"sentry-trace": header})
    parent = remote_parent(context)
    assert (f"{parent.trace_id:032x}", f"{parent.span_id:016x}") == (TRACE, SPAN)
    assert parent.is_remote and parent.trace_flags.sampled is bool(sampled)
    incoming = incoming_from(context)
    assert (incoming is not None and incoming.deferred) is (sampled is None)


@pytest.mark.parametrize(
    "header",
    [
        f"{TRACE[:-1]}-{SPAN}-1",  # 31 hex digits
        f"{TRACE}0-{SPAN}-1",
        f"{TRACE}-{SPAN[:-1]}-1",
        f"{TRACE}-{SPAN}-2",
        f"{TRACE.upper()}-{SPAN}-1",
        f"{TRACE}-{SPAN}-1-extra",
        f"{'0' * 32}-{SPAN}-1",
        f"{TRACE}-{'0' * 16}-1",
        f"{TRACE}{SPAN}",
        "x" * 50,
        "",
    ],
)
def test_malformed_sentry_trace_is_ignored(header: str) -> None:
    assert parse_sentry_trace(header) is None
    context = composite().extract({"sentry-trace": header, "baggage": UPSTREAM_BAGGAGE})
    assert not remote_parent(context).is_valid
    assert incoming_from(context) is None


def test_w3c_traceparent_wins_and_foreign_sentry_baggage_is_dropped() -> None:
    carrier = {
        "traceparent": f"00-{W3C_TRACE}-00f067aa0ba902b7-01",
        "sentry-trace": f"{TRACE}-{SPAN}-0",
        "baggage": UPSTREAM_BAGGAGE,  # names TRACE, not the W3C trace
    }
    context = composite().extract(carrier)
    assert f"{remote_parent(context).trace_id:032x}" == W3C_TRACE
    assert remote_parent(context).trace_flags.sampled
    assert incoming_from(context) is None
    # The W3C baggage propagator still keeps every entry as OTel baggage, sentry ones included.
    assert baggage_api.get_baggage("other-vendor", context) == "abc"


def test_w3c_traceparent_with_sentry_baggage_of_the_same_trace_keeps_the_dsc() -> None:
    carrier = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "baggage": UPSTREAM_BAGGAGE}
    context = composite().extract(carrier)
    incoming = incoming_from(context)
    assert incoming is not None and not incoming.deferred
    assert incoming.items["release"] == "web@1.2.3" and incoming.items["transaction"] == "Checkout page"


def test_order_in_otel_propagators_does_not_let_sentry_override_w3c() -> None:
    carrier = {"traceparent": f"00-{W3C_TRACE}-00f067aa0ba902b7-00", "sentry-trace": f"{TRACE}-{SPAN}"}
    context = composite("sentry_bridge,tracecontext,baggage").extract(carrier)
    assert f"{remote_parent(context).trace_id:032x}" == W3C_TRACE
    assert incoming_from(context) is None  # not "deferred": W3C said not sampled, and W3C wins


def test_extract_survives_garbage_carriers() -> None:
    for carrier in ({"sentry-trace": [f"{TRACE}-{SPAN}-1", "junk"]}, {"baggage": "=,;=,sentry-=x"}, {}):
        composite().extract(carrier)


# -- inject -----------------------------------------------------------------------------------------
def _inject_under(context: context_api.Context, carrier: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """An outgoing call as instrumentation makes it: the extracted context attached (as server
    instrumentation does), a CLIENT span current, then the global-style inject."""
    tracer = TracerProvider().get_tracer("test")
    carrier = {} if carrier is None else carrier
    token = context_api.attach(context)
    try:
        with tracer.start_as_current_span("GET /outgoing", kind=trace_api.SpanKind.CLIENT) as span:
            composite().inject(carrier)
            carrier["_span"] = span.get_span_context()
    finally:
        context_api.detach(token)
    return carrier


def test_inject_continues_the_incoming_dsc_unchanged_and_keeps_other_baggage() -> None:
    incoming = composite().extract({"sentry-trace": f"{TRACE}-{SPAN}-1", "baggage": UPSTREAM_BAGGAGE})
    carrier = _inject_under(incoming)
    span = carrier["_span"]
    assert carrier["sentry-trace"] == f"{TRACE}-{span.span_id:016x}-1"
    assert carrier["traceparent"] == f"00-{TRACE}-{span.span_id:016x}-01"
    members = carrier["baggage"].split(",")
    assert "other-vendor=abc" in members  # the W3C baggage propagator's output survived
    assert sentry_items(carrier["baggage"]) == sentry_items(UPSTREAM_BAGGAGE)
    assert len([m for m in members if m.startswith("sentry-")]) == 8  # no duplicates


def test_inject_fills_a_missing_sample_rand_consistently() -> None:
    upstream = f"sentry-trace_id={TRACE},sentry-public_key=k,sentry-sample_rate=0.5,sentry-sampled=false"
    context = composite().extract({"sentry-trace": f"{TRACE}-{SPAN}-0", "baggage": upstream})
    carrier = _inject_under(context)
    items = sentry_items(carrier["baggage"])
    assert carrier["sentry-trace"].endswith("-0")
    assert float(items["sample_rand"]) >= 0.5 and items["sampled"] == "false" and items["public_key"] == "k"


def test_inject_without_a_dsc_sends_sentry_trace_and_leaves_baggage_alone() -> None:
    context = baggage_api.set_baggage("tenant", "acme")
    carrier = _inject_under(context)
    assert carrier["baggage"] == "tenant=acme"
    assert carrier["sentry-trace"].split("-")[0] == f"{carrier['_span'].trace_id:032x}"


def test_inject_outside_a_trace_does_nothing() -> None:
    carrier: dict[str, str] = {}
    SentryPropagator().inject(carrier, context_api.Context())
    assert carrier == {}


def test_merge_baggage_replaces_sentry_entries_in_any_case_of_header() -> None:
    merged = merge_baggage("a=1, sentry-trace_id=old ,b=2;prop", {"trace_id": "new", "transaction": "GET /a,b"})
    assert merged == "a=1,b=2;prop,sentry-trace_id=new,sentry-transaction=GET%20%2Fa%2Cb"
    assert sentry_items(merged)["transaction"] == "GET /a,b"
    carrier = {"Baggage": "x=1"}
    upstream = composite().extract({"sentry-trace": f"{TRACE}-{SPAN}-1", "baggage": UPSTREAM_BAGGAGE})
    SentryPropagator().inject(carrier, upstream)
    assert "Baggage" not in carrier and carrier["baggage"].startswith("x=1,sentry-")


# -- the deferred decision --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("baggage", "expected"),
    [
        (f"sentry-trace_id={TRACE},sentry-sample_rand=0.2", True),  # 0.2 < 0.5: Sentry's own rule
        (f"sentry-trace_id={TRACE},sentry-sample_rand=0.7", False),
        ("", None),  # no sample_rand: the trace id decides, as for a root
    ],
)
def test_a_deferred_upstream_decision_is_made_here(baggage: str, expected: Optional[bool]) -> None:
    sampler = build_sampler(Options.resolve({"traces_sample_rate": 0.5}, environ={}))
    context = composite().extract({"sentry-trace": f"{TRACE}-{SPAN}", "baggage": baggage})
    trace_id = int(TRACE, 16)
    decision = sampler.should_sample(context, trace_id, "GET /").decision
    if expected is None:
        expected = (trace_id & (2**64 - 1)) < 2**63
    assert (decision is Decision.RECORD_AND_SAMPLE) is expected


def test_an_explicit_no_is_respected() -> None:
    sampler = build_sampler(Options.resolve({"traces_sample_rate": 1.0}, environ={}))
    for carrier in (
        {"sentry-trace": f"{TRACE}-{SPAN}-0", "baggage": f"sentry-trace_id={TRACE},sentry-sample_rand=0.01"},
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"},
    ):
        context = composite().extract(carrier)
        assert sampler.should_sample(context, int(TRACE, 16), "GET /").decision is Decision.DROP


def test_the_deferred_dsc_states_our_decision_and_rate() -> None:
    incoming = Incoming({"trace_id": TRACE, "public_key": "k"}, deferred=True)
    dsc = incoming.dsc(int(TRACE, 16), True, 0.25)
    assert dsc["sampled"] == "true" and dsc["sample_rate"] == "0.25" and float(dsc["sample_rand"]) < 0.25
    assert dsc["public_key"] == "k"  # the head's, unchanged


# -- names ------------------------------------------------------------------------------------------
def test_sentry_means_the_bridges_propagator_and_it_always_runs_last() -> None:
    propagator = composite("sentry,tracecontext")
    kinds = [type(p).__name__ for p in propagator._propagators]  # type: ignore[attr-defined]
    assert kinds == ["TraceContextTextMapPropagator", "SentryPropagator"]


def test_the_default_propagators_include_sentry_when_a_dsn_is_set() -> None:
    assert Options.resolve(environ={}).propagators == ("tracecontext", "baggage")
    with_dsn = Options.resolve(environ={"SENTRY_DSN": "https://key@o1.ingest.sentry.io/5"})
    assert with_dsn.propagators == ("tracecontext", "baggage", "sentry_bridge")
    assert with_dsn.sources["propagators"] == "default"


def test_otel_loads_the_installed_entry_point_from_otel_propagators() -> None:
    # OpenTelemetry's own propagate module reads OTEL_PROPAGATORS at import time: no circular import.
    code = (
        "from opentelemetry import propagate\n"
        "names = [type(p).__module__ + ':' + type(p).__name__ for p in propagate.get_global_textmap()._propagators]\n"
        "print(names[-1])\n"
    )
    env = {"OTEL_PROPAGATORS": "tracecontext,baggage,sentry_bridge", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "bridge.propagation:SentryPropagator", out.stderr
