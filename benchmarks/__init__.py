"""The comparison harness: the bridge against the stacks it replaces, measured in one run on one machine.

Run ``python -m benchmarks.run`` (see benchmarks/README.md). Not part of the normal test run; its smoke mode
(``--smoke``) is, through tests/test_benchmarks_smoke.py.
"""
