"""``python -m tests.fuzz TARGET [libFuzzer options] [CORPUS_DIR ...]``: one target under atheris.

The bridge's modules are instrumented for coverage; libFuzzer's options bound the run
(``-max_total_time``, ``-timeout`` per input, ``-rss_limit_mb``), and a crash is written under
``-artifact_prefix`` with a non-zero exit status.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["bridge"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
