"""What the logging integration costs per log record: plain logging, the bridge, sentry-sdk, OpenTelemetry's
log export, and the bridge exporting its logs over OTLP.

    python -m benchmarks.logging_cost [--records N] [--repeat R]

Each stack runs in its own process (so one's patches never touch another's), logs N INFO records (each a
breadcrumb under both SDKs, and a log record where logs are exported) and N DEBUG records (below the
breadcrumb level), with a NullHandler so no output is formatted, and prints microseconds per record (best of
R rounds). No Sentry event is sent: nothing reaches ERROR, and the DSN points at a closed port (or at the
counting sink when one is given). The stacks:

- ``plain``: logging alone; ``bridge``: ``bridge.init`` (Sentry leg, its breadcrumbs); ``sentry_sdk``:
  ``sentry_sdk.init`` (its default logging integration);
- ``otel_logs``: OpenTelemetry's ``LoggerProvider`` + ``BatchLogRecordProcessor`` + OTLP/HTTP log exporter,
  its ``LoggingHandler`` on the root logger; ``sentry_otel``: that and sentry-sdk in one process (today's
  mixed deployment);
- ``bridge_otlp``: the bridge with ``OTEL_LOGS_EXPORTER=otlp`` (breadcrumbs and OTLP log records).

``cpu_us``: the process's CPU (exporter threads included) for every INFO round and the final flush, per
INFO record, so the export of every record is paid for; ``rss_mb``: peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any, Callable, Optional

from benchmarks.rss import peak_rss_mb

__all__ = ["STACKS", "measure", "run_stack", "main"]

STACKS = ("plain", "bridge", "sentry_sdk", "otel_logs", "sentry_otel", "bridge_otlp")
DSN = "http://key@127.0.0.1:9/1"
CLOSED_LOGS = "http://127.0.0.1:9/v1/logs"


def _otel_logs(endpoint: str) -> Callable[[], Any]:
    import logging

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    with warnings.catch_warnings():  # the SDK's LoggingHandler is deprecated in the pinned SDK; still its peer
        warnings.simplefilter("ignore")
        from opentelemetry.sdk._logs import LoggingHandler

        provider = LoggerProvider()
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
        logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
    return lambda: provider.force_flush(30_000)


def measure(
    stack: str, records: int, repeat: int, dsn: str = DSN, logs_endpoint: str = CLOSED_LOGS
) -> dict[str, float]:
    import logging

    flush: Callable[[], Any] = lambda: None  # noqa: E731
    if stack in ("bridge", "bridge_otlp"):
        import bridge

        if stack == "bridge_otlp":
            os.environ["OTEL_LOGS_EXPORTER"] = "otlp"
            os.environ["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = logs_endpoint
        bridge.init(dsn=dsn, exporters=["sentry"], service_name="logging-cost")
        flush = lambda: bridge.flush(30)  # noqa: E731
    if stack in ("sentry_sdk", "sentry_otel"):
        import sentry_sdk

        sentry_sdk.init(dsn=dsn)
    if stack in ("otel_logs", "sentry_otel"):
        flush = _otel_logs(logs_endpoint)
    log = logging.getLogger("bench.records")
    log.setLevel(logging.DEBUG)
    log.propagate = stack in ("otel_logs", "sentry_otel", "bridge_otlp")  # their OTel handler is on the root
    log.addHandler(logging.NullHandler())
    out: dict[str, float] = {}
    for level, name in ((logging.INFO, "info_us"), (logging.DEBUG, "debug_us")):
        best = float("inf")
        cpu = time.process_time()
        for _ in range(repeat):
            start = time.perf_counter()
            for number in range(records):
                log.log(level, "record %d of the run", number)
            best = min(best, time.perf_counter() - start)
        if level == logging.INFO:
            flush()
            out["cpu_us"] = (time.process_time() - cpu) / (records * repeat) * 1e6
        out[name] = best / records * 1e6
    flush()
    out["rss_mb"] = peak_rss_mb()
    return out


def run_stack(
    stack: str, records: int, repeat: int, dsn: Optional[str] = None, logs_endpoint: Optional[str] = None,
    env: Optional[dict[str, str]] = None,
) -> dict[str, float]:  # fmt: skip
    """One stack in a fresh process; its figures."""
    command = [sys.executable, "-m", "benchmarks.logging_cost", "--stack", stack,
               "--records", str(records), "--repeat", str(repeat)]  # fmt: skip
    if dsn:
        command += ["--dsn", dsn]
    if logs_endpoint:
        command += ["--logs-endpoint", logs_endpoint]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"logging_cost {stack} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stack", choices=STACKS, help=argparse.SUPPRESS)  # one stack, in this process
    parser.add_argument("--dsn", default=DSN, help=argparse.SUPPRESS)
    parser.add_argument("--logs-endpoint", default=CLOSED_LOGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stack:
        print(json.dumps(measure(args.stack, args.records, args.repeat, args.dsn, args.logs_endpoint)))
        return 0
    from benchmarks.sink import SinkProcess

    header = f"{'stack':<13}{'INFO record':>14}{'DEBUG record':>15}{'CPU/INFO record':>18}{'peak RSS':>11}"
    print(f"{header}{'OTLP logs':>11}")
    with SinkProcess(sys.executable) as sink:
        for stack in STACKS:
            sink.reset()
            figures = run_stack(stack, args.records, args.repeat, sink.dsn, sink.logs_endpoint)
            logs = sink.counts()["otlp_logs"]
            print(
                f"{stack:<13}{figures['info_us']:>11.2f} us{figures['debug_us']:>12.2f} us{figures['cpu_us']:>15.2f} us"
                f"{figures['rss_mb']:>8.1f} MB{logs:>11}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
