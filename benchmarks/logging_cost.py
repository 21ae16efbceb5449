"""What the logging integration costs per log record: plain logging, the bridge, sentry-sdk.

    python -m benchmarks.logging_cost [--records N] [--repeat R]

Each stack runs in its own process (so one's patches never touch another's), logs N INFO records (each a
breadcrumb under both SDKs) and N DEBUG records (below the breadcrumb level), with a NullHandler so no
output is formatted, and prints microseconds per record (best of R rounds). No event is sent: the DSN
points at a closed port and nothing reaches ERROR.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STACKS = ("plain", "bridge", "sentry_sdk")
DSN = "http://key@127.0.0.1:9/1"


def measure(stack: str, records: int, repeat: int) -> dict[str, float]:
    import logging

    if stack == "bridge":
        import bridge

        bridge.init(dsn=DSN, exporters=["sentry"], service_name="logging-cost")
    elif stack == "sentry_sdk":
        import sentry_sdk

        sentry_sdk.init(dsn=DSN)
    log = logging.getLogger("bench.records")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(logging.NullHandler())
    out: dict[str, float] = {}
    for level, name in ((logging.INFO, "info_us"), (logging.DEBUG, "debug_us")):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for number in range(records):
                log.log(level, "record %d of the run", number)
            best = min(best, time.perf_counter() - start)
        out[name] = best / records * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stack", choices=STACKS, help=argparse.SUPPRESS)  # one stack, in this process
    args = parser.parse_args(argv)
    if args.stack:
        print(json.dumps(measure(args.stack, args.records, args.repeat)))
        return 0
    print(f"{'stack':<12}{'INFO record (breadcrumb)':>28}{'DEBUG record (dropped)':>26}")
    for stack in STACKS:
        command = [sys.executable, "-m", "benchmarks.logging_cost", "--stack", stack,
                   "--records", str(args.records), "--repeat", str(args.repeat)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{stack:<12}{figures['info_us']:>25.2f} us{figures['debug_us']:>23.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
