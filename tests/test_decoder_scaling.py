"""No quadratic blow-up, bounded memory: serve's decoders on hostile inputs of size n and 4n.

The cases are benchmarks/decoder_scaling.py's (its report has the times). Asserted here, generously:
- function calls made for 4n over those for n stay under 6 (linear is 4; quadratic would be 16): a count,
  so machine load cannot make it flaky;
- for the cases whose cost is inside one regular expression (long lines that almost match a frame
  pattern; no calls to count), the best-of-5 time ratio stays under 10;
- peak memory while decoding stays under a bound per input byte (per output byte for gzip).
"""

from __future__ import annotations

import pytest

from benchmarks.decoder_scaling import CASES, Case, measure, operations, peak_bytes

REGEX_BOUND = [case for case in CASES if "near-miss" in case.name or "nesting" in case.name]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_calls_grow_linearly(case: Case) -> None:
    small, large = operations(case, case.make(case.base)), operations(case, case.make(4 * case.base))
    assert large / max(1, small) < 6, (small, large)


@pytest.mark.parametrize("case", REGEX_BOUND, ids=[case.name for case in REGEX_BOUND])
def test_regex_bound_time_grows_linearly(case: Case) -> None:
    _, ratio = measure(case, 4 * case.base)
    if ratio >= 10:  # one re-measure: a busy machine can stall one side of the ratio
        _, ratio = measure(case, 4 * case.base)
    assert ratio < 10


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_memory_is_bounded_by_the_input(case: Case) -> None:
    data = case.make(4 * case.base)
    peak = peak_bytes(case, data)
    if case.name.startswith("gzip"):
        assert peak < 3 * (4 * case.base * 1024) + (1 << 20)  # the decompressed bytes, and not many copies
    else:
        assert peak < 300 * len(data) + (1 << 20), peak
