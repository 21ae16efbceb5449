"""Sentry's invariant, checked against OpenTelemetry's real ratio sampler: sampled iff sample_rand < sample_rate."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from bridge.sample_rand import sample_rand, stated_rate, trace_fraction, valid_sample_rand

RATES = [0.0, 1e-7, 0.0001, 0.001, 0.1, 0.25, 1 / 3, 0.5, 0.7, 0.9, 0.999999, 0.9999995, 1.0]


def decide(rate: float, trace_id: int) -> bool:
    result = TraceIdRatioBased(rate).should_sample(None, trace_id, "GET /")
    return result.decision is Decision.RECORD_AND_SAMPLE


def assert_invariant(text: str, rate: float, sampled: bool) -> None:
    # Exactly what Sentry does: both read back from their DSC strings as floats, then compared.
    assert len(text.split(".")[1]) >= 6, text
    value = float(text)
    assert 0.0 <= value < 1.0, text
    assert (value < float(repr(rate))) is sampled, (text, rate, sampled)


@pytest.mark.parametrize("rate", RATES)
def test_the_real_sampler_and_the_dsc_agree_on_random_trace_ids(rate: float) -> None:
    rng = random.Random(f"sample_rand {rate}")
    sampled_count = 0
    for _ in range(4000):
        trace_id = rng.getrandbits(128) or 1
        sampled = decide(rate, trace_id)
        sampled_count += sampled
        stated = stated_rate(sampled, rate)
        text = sample_rand(trace_id, sampled, stated)
        assert_invariant(text, stated, sampled)
        if 0.001 <= rate <= 0.9:  # our own decision: sample_rand is the sampler's number, truncated
            assert float(trace_fraction(trace_id)) - 1e-6 <= float(text) <= float(trace_fraction(trace_id))
    if 0.25 <= rate <= 0.9:  # and the sampler really samples at that rate
        assert abs(sampled_count / 4000 - rate) < 0.05


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.3, 1 / 3, 0.7, 0.0001, 1e-7, 0.9999995, 1 - 2**-53])
def test_trace_ids_at_the_sampler_boundary(rate: float) -> None:
    bound = TraceIdRatioBased.get_bound_for_rate(rate)
    exact = math.ceil(Fraction(rate) * 2**64)  # the first id whose fraction is not below the rate
    low64 = {bound - 2, bound - 1, bound, bound + 1, exact - 1, exact, exact + 1, 2**64 - 1, 0}
    high = random.Random(7).getrandbits(64) << 64
    for low in sorted(x for x in low64 if 0 <= x < 2**64):
        trace_id = high | low or 1
        sampled = decide(rate, trace_id)
        stated = stated_rate(sampled, rate)
        assert_invariant(sample_rand(trace_id, sampled, stated), stated, sampled)


def test_rate_point_one_whose_double_is_above_one_tenth() -> None:
    # 0.1 as a double is 0.1000000000000000055...: a trace whose fraction lies in [1/10, that) is sampled,
    # and "0.100000" would read as not below the rate; the last digit must step down.
    rate = 0.1
    low = math.ceil(Fraction(1, 10) * 2**64)
    assert low < TraceIdRatioBased.get_bound_for_rate(rate)
    assert decide(rate, low)
    assert sample_rand(low, True, rate) == "0.099999"


def test_rates_above_0_999999_unsampled_need_more_decimals() -> None:
    text = sample_rand(2**64 - 1, False, 0.9999995)
    assert float(text) >= 0.9999995 and float(text) < 1.0


def test_decisions_made_elsewhere_get_a_consistent_number() -> None:
    # A parent decided (W3C traceparent, sampled): our rate 0.25 could not explain a trace id at 0.9.
    trace_id = int(0.9 * 2**64)
    parent = ParentBased(TraceIdRatioBased(0.25))
    assert parent.should_sample(None, trace_id, "x").decision is Decision.DROP  # alone, we would drop it
    text = sample_rand(trace_id, True, 0.25)
    assert float(text) < 0.25
    assert text == sample_rand(trace_id, True, 0.25)  # deterministic in the trace id
    assert stated_rate(True, 0.0) == 1.0 and stated_rate(False, 1.0) == 0.0 and stated_rate(True, 0.3) == 0.3
    assert_invariant(sample_rand(trace_id, True, stated_rate(True, 0.0)), 1.0, True)
    assert_invariant(sample_rand(trace_id, False, stated_rate(False, 1.0)), 0.0, False)


def test_unknown_decision_uses_the_whole_interval_and_validity() -> None:
    assert sample_rand(2**63, None, None) == "0.500000"
    assert valid_sample_rand("0.5") == 0.5
    for bad in (None, "", "1", "1.0", "-0.1", "nan", "abc"):
        assert valid_sample_rand(bad) is None


@pytest.mark.parametrize("rate", [1.0, 0.5, 0.1, 0.25, 1e-3])
def test_the_inlined_common_case_states_what_the_general_path_states(rate: float) -> None:
    from bridge.sample_rand import _SCALE, _decimal_in

    generator = random.Random(18)
    for _ in range(2000):
        trace_id = generator.getrandbits(128)
        sampled = trace_fraction(trace_id) < rate
        lo, hi = (0.0, rate) if sampled else (rate, 1.0)
        general = next(
            text
            for decimals in range(6, 18)
            if (text := _decimal_in(trace_id & (_SCALE - 1), _SCALE, lo, hi, decimals)) is not None
        )
        assert sample_rand(trace_id, sampled, rate) == general
