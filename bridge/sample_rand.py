"""``sample_rand`` for the DSC: the random number behind a sampling decision, stated so Sentry can check it.

Sentry's invariant: a trace is sampled if and only if ``float(sample_rand) < float(sample_rate)``, both
read from the DSC (``sample_rand`` in [0, 1), 6 decimals by convention). Relay and downstream SDKs rely
on it (a downstream SDK that defers to ``sample_rand`` must reach the same decision).

Where the number comes from. OpenTelemetry's ``TraceIdRatioBased(rate)`` samples when
``x < bound``, with ``x`` the lower 64 bits of the trace id and ``bound = round(rate * 2**64)`` (the SDK's
``TRACE_ID_LIMIT`` and ``get_bound_for_rate``). So ``u = x / 2**64`` *is* the random number the sampler
used: for every rate whose ``rate * 2**64`` is an integer (every double rate >= 2**-11, i.e. every
rate anyone configures) ``x < bound  <=>  u < rate`` exactly, and ``sample_rand`` is ``u``.

Why it is exact after formatting (``sample_rand(trace_id, sampled, rate)``):

1. The decision fixes an interval of valid values: ``[0, rate)`` when sampled, ``[rate, 1)`` when not
   (``[0, 1)`` when the decision or the rate is unknown). ``lo`` and ``hi`` are the very doubles Sentry
   will compare against.
2. ``v = u`` when ``u`` lies in it (always, for our own ratio decisions); otherwise (a decision made
   upstream with another rate, or a tiny rate where ``round`` moved the bound by one) ``v`` is ``u``
   mapped affinely into ``[lo, hi)``: still deterministic in the trace id, and uniform there.
3. ``v`` is truncated (never rounded up) to 6 decimals; the text is then parsed back with ``float`` and
   compared with ``lo`` and ``hi`` exactly as Sentry compares, and the last digit is moved by one if
   double rounding put it across a boundary (e.g. rate 0.1, whose double is slightly above 1/10: a
   trace with ``1/10 <= u < rate`` is sampled, and "0.100000" would read as not below the rate, so
   "0.099999" is stated). Only when no 6-decimal number lies in ``[lo, hi)`` (rates above 0.999999,
   unsampled) are more decimals used.

Every returned text therefore satisfies ``lo <= float(text) < hi``: the invariant holds by construction,
and it is checked, not assumed. ``tests/test_sample_rand.py`` runs the real sampler on random trace ids.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Optional

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

__all__ = ["TRACE_ID_BITS_MASK", "trace_fraction", "sample_rand", "stated_rate", "valid_sample_rand"]

TRACE_ID_BITS_MASK = TraceIdRatioBased.TRACE_ID_LIMIT  # the lower 64 bits, as the SDK's ratio sampler reads them
_SCALE = TRACE_ID_BITS_MASK + 1


def trace_fraction(trace_id: int) -> Fraction:
    """``u`` in [0, 1): the number ``TraceIdRatioBased`` compares with its rate (exactly)."""
    return Fraction(trace_id & TRACE_ID_BITS_MASK, _SCALE)


def stated_rate(sampled: bool, rate: float) -> float:
    """The sample rate to state next to a decision: ``rate``, unless ``rate`` cannot explain the decision.

    A decision inherited from a parent (``parentbased_*``) may contradict this service's rate (sampled at
    rate 0, or dropped at rate 1); the rate that explains it is then 1.0 or 0.0, as Sentry's SDKs state
    for a decision they did not make themselves.
    """
    if sampled and rate <= 0.0:
        return 1.0
    if not sampled and rate >= 1.0:
        return 0.0
    return rate


def valid_sample_rand(text: Optional[str]) -> Optional[float]:
    """The value of a propagated ``sample_rand`` if it is a number in [0, 1), else None."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value < 1.0 else None


def sample_rand(trace_id: int, sampled: Optional[bool], rate: Optional[float]) -> str:
    """The DSC's ``sample_rand`` for a trace: derived from its id, consistent with ``sampled`` at ``rate``."""
    lo, hi = 0.0, 1.0
    if sampled is not None and rate is not None:
        lo, hi = (0.0, float(rate)) if sampled else (float(rate), 1.0)
        if not lo < hi:  # the rate cannot explain the decision; callers pass stated_rate() to avoid this
            lo, hi = 0.0, 1.0
    # Exact rational arithmetic on integers: u = x / 2**64; Fractions only when u must be mapped (rare).
    x = trace_id & TRACE_ID_BITS_MASK
    lo_n, lo_d = lo.as_integer_ratio()
    hi_n, hi_d = hi.as_integer_ratio()
    if lo_n * _SCALE <= x * lo_d and x * hi_d < hi_n * _SCALE:  # lo <= u < hi
        # The common case first, inlined: _decimal_in(x, _SCALE, lo, hi, 6)'s first candidate (once per
        # transaction on the Sentry worker: half of the DSC's cost went to the general path's calls).
        k = x * 1_000_000 // _SCALE  # floor(u * 10**6) < 10**6, as u < 1
        text = f"0.{k:06d}"
        if lo <= float(text) < hi:
            return text
        num, den = x, _SCALE
    else:
        low, high = Fraction(lo), Fraction(hi)
        value = low + Fraction(x, _SCALE) * (high - low)
        num, den = value.numerator, value.denominator
    for decimals in range(6, 18):
        stated = _decimal_in(num, den, lo, hi, decimals)
        if stated is not None:
            return stated
    return repr(lo)  # lo itself always lies in [lo, hi); unreachable for any rate a DSC can state


def _decimal_in(num: int, den: int, lo: float, hi: float, decimals: int) -> Optional[str]:
    """``num / den`` truncated to ``decimals`` digits, moved by one unit if that is needed to read back in
    [lo, hi)."""
    scale = 10**decimals
    k = min(num * scale // den, scale - 1)  # floor division truncates the non-negative value exactly
    for candidate in (k, k + 1, k - 1):
        if 0 <= candidate < scale:
            text = f"0.{candidate:0{decimals}d}"
            if lo <= float(text) < hi:
                return text
    return None
