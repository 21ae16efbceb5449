"""``otel-sentry-bridge check``: the effective configuration, its problems, and one test trace to both backends.

Prints every option with its value (secrets masked: the DSN's key, OTLP header values, URL passwords) and
where it came from (argument, environment variable, default); then what looks wrong; then sends one test
trace (with one error) to the collector and to Sentry and says what each answered, in plain words.
Exit status: 0 when everything worked, 1 when a send failed, 2 when the configuration is invalid.

``run_check(argv_or_namespace, out)`` is the entry; ``add_parser(subparsers)`` adds ``check`` to a CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, TextIO, Union
from urllib.parse import urlsplit, urlunsplit

from bridge.config import Options
from bridge.errors import ConfigError
from bridge.version import __version__

__all__ = ["run_check", "add_parser", "describe", "problems", "mask_url"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_MARK = {True: "ok  ", False: "FAIL", None: "skip"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``check`` to an ``argparse`` subparsers object; the parsed namespace goes to :func:`run_check`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="print the effective configuration and send a test trace and error to both backends",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _arguments(parser)
    parser.set_defaults(run=run_check)  # as the CLI's other commands: ``arguments.run(arguments) -> exit status``
    return parser


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="Sentry DSN (overrides SENTRY_DSN)")
    parser.add_argument("--otlp-endpoint", help="OTLP/HTTP traces URL (overrides the OTEL_EXPORTER_OTLP_* endpoints)")
    parser.add_argument("--service-name", help="service name (overrides OTEL_SERVICE_NAME)")
    parser.add_argument("--environment", help="Sentry environment (overrides SENTRY_ENVIRONMENT)")
    parser.add_argument("--release", help="release (overrides SENTRY_RELEASE)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="OPTION=VALUE", help="any option of bridge.init(), repeatable"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each backend (default 10)")
    parser.add_argument("--no-send", action="store_true", help="check the configuration only; send nothing")


def run_check(
    argv_or_namespace: Union[Sequence[str], argparse.Namespace, None] = None,
    out: Optional[TextIO] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> int:
    """Run the check; returns the exit status. ``environ`` defaults to ``os.environ``."""
    out = out or sys.stdout
    if isinstance(argv_or_namespace, argparse.Namespace):
        args = argv_or_namespace
    else:
        parser = argparse.ArgumentParser(prog="otel-sentry-bridge check")
        _arguments(parser)
        args = parser.parse_args(list(argv_or_namespace or []))
    target = out

    def write(line: str = "") -> None:
        print(line, file=target)

    write(f"otel-sentry-bridge {__version__}: check")
    arguments = {
        key: value
        for key, value in (
            ("dsn", args.dsn),
            ("otlp_endpoint", args.otlp_endpoint),
            ("service_name", args.service_name),
            ("environment", args.environment),
            ("release", args.release),
        )
        if value is not None
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            write(f"\nFAIL configuration: --set {item!r}: expected OPTION=VALUE")
            return EXIT_CONFIG
        arguments[key.strip()] = value
    warnings = _Warnings()
    try:
        with warnings:
            options = Options.resolve(arguments, environ)
            if not options.disabled:
                from bridge.setup import build_propagator

                build_propagator(options)  # names in OTEL_PROPAGATORS must be installed
    except ConfigError as exc:
        write(f"\nFAIL configuration: {exc}")
        write("     Nothing was sent. Fix the setting above and run the check again.")
        return EXIT_CONFIG
    write("\nConfiguration (value, then where it came from):")
    for line in describe(options):
        write(f"  {line}")
    write("\nChecks:")
    notes = [("warn", text) for text in warnings.messages] + problems(options, environ)
    if not notes:
        write("  ok    nothing looks wrong")
    for level, text in notes:
        write(f"  {level:<5} {text}")
    if args.no_send:
        write("\nNothing sent (--no-send).")
        return EXIT_OK
    return _send(options, args.timeout, write)


def _send(options: Options, timeout: float, write: Callable[..., None]) -> int:
    from bridge import probe

    trace = probe.make_test_trace(options)
    write(f"\nSending a test trace with one error (trace id {trace.trace_id:032x}):")
    outcomes: list[probe.Outcome] = []
    if options.otlp_enabled:
        outcomes.append(probe.send_otlp(options, trace, timeout))
    else:
        outcomes.append(probe.Outcome("OTLP", None, "the OTLP exporter is off (OTEL_TRACES_EXPORTER)"))
    if "otlp" in options.metrics_exporters:
        outcomes.append(probe.send_otlp_metrics(options, timeout))
    else:
        outcomes.append(probe.Outcome("OTLP metrics", None, "the OTLP metrics exporter is off (OTEL_METRICS_EXPORTER)"))
    if "otlp" in options.logs_exporters:
        from bridge.logs_probe import send_test_log

        outcomes.append(send_test_log(options, trace.trace_id, timeout))
    if options.sentry_enabled:
        probe.build_sentry_envelopes(options, trace)
        outcomes.extend(probe.send_sentry(options, trace, timeout))
    else:
        why = "no SENTRY_DSN" if options.dsn is None else "the sentry exporter is off (OTEL_TRACES_EXPORTER)"
        outcomes.append(probe.Outcome("Sentry", None, why))
    for outcome in outcomes:
        write(f"  {_MARK[outcome.ok]}  {outcome.what}: {outcome.message}")
    failed = sum(outcome.ok is False for outcome in outcomes)
    sent = sum(outcome.ok is not None for outcome in outcomes)
    if failed:
        write(f"\n{failed} of {sent} sends failed.")
        return EXIT_FAILED
    write(f"\nAll {sent} sends succeeded." if sent else "\nNothing to send to.")
    return EXIT_OK


# -- the configuration, printed ---------------------------------------------------------------------
def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``****``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<not a URL>"


def _show(key: str, value: Any) -> str:
    if value is None:
        return "(unset)"
    if key == "dsn":
        return str(value)  # Dsn.__str__ masks the key
    if key in ("otlp_headers", "metrics_headers", "logs_headers"):
        return ", ".join(f"{name}=****" for name in value) or "(none)"
    if key in ("otlp_endpoint", "metrics_endpoint", "logs_endpoint"):
        return mask_url(str(value))
    if key == "before_send":
        return getattr(value, "__qualname__", type(value).__name__)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if isinstance(value, tuple):
        return ", ".join(str(part) for part in value) or "(none)"
    return str(value)


_FALLBACKS: dict[str, tuple[tuple[str, ...], Optional[str]]] = {
    "environment": (("deployment.environment.name", "deployment.environment"), "production"),
    "release": (("service.version",), None),
}


def describe(options: Options) -> list[str]:
    """One line per option: name, value (secrets masked), source."""
    rows = []
    for name in Options.__dataclass_fields__:
        if name == "sources":
            continue
        value, source = getattr(options, name), options.sources.get(name, "default")
        if value is None and name in _FALLBACKS:  # the value the events will carry
            keys, default = _FALLBACKS[name]
            found = next((key for key in keys if key in options.resource_attributes), None)
            if found is not None:
                value, source = options.resource_attributes[found], f"resource {found} (OTEL_RESOURCE_ATTRIBUTES)"
            elif default is not None:
                value = default
        rows.append((name, _show(name, value), source))
    width = max(len(name) for name, _, _ in rows)
    value_width = min(48, max(len(value) for _, value, _ in rows))
    return [f"{name:<{width}}  {value:<{value_width}}  {source}" for name, value, source in rows]


def problems(options: Options, environ: Optional[Mapping[str, str]] = None) -> list[tuple[str, str]]:
    """What is valid but probably not what was meant: ``[(level, text)]`` with level "warn" or "note"."""
    import os

    env = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []
    endpoint = urlsplit(options.otlp_endpoint)
    if options.disabled:
        found.append(("warn", "OTEL_SDK_DISABLED is true: the bridge traces and exports nothing"))
    if options.otlp_enabled and endpoint.port == 4317:
        found.append(("warn", "the OTLP endpoint uses port 4317, OTLP/gRPC's; the bridge speaks OTLP/HTTP (4318)"))
    if options.otlp_enabled and not endpoint.path.rstrip("/").endswith("/v1/traces"):
        found.append(("warn", f"the OTLP endpoint's path {endpoint.path or '/'!r} does not end with /v1/traces"))
    metrics_endpoint = urlsplit(options.metrics_endpoint)
    if "otlp" in options.metrics_exporters and metrics_endpoint.port == 4317:
        found.append(("warn", "the OTLP metrics endpoint uses port 4317, OTLP/gRPC's; the bridge speaks OTLP/HTTP"))
    if "otlp" in options.metrics_exporters and not metrics_endpoint.path.rstrip("/").endswith("/v1/metrics"):
        path = metrics_endpoint.path or "/"
        found.append(("warn", f"the OTLP metrics endpoint's path {path!r} does not end with /v1/metrics"))
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base.rstrip("/").endswith("/v1/traces") and options.sources.get("otlp_endpoint", "").endswith(
        "(OTEL_EXPORTER_OTLP_ENDPOINT)"
    ):
        found.append(
            (
                "warn",
                "OTEL_EXPORTER_OTLP_ENDPOINT already ends with /v1/traces and gets /v1/traces appended; "
                "put a full URL in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT instead",
            )
        )
    if options.dsn is None:
        found.append(("note", "no SENTRY_DSN: Sentry is off, OTLP only"))
    elif not options.sentry_enabled:
        found.append(("warn", "SENTRY_DSN is set but OTEL_TRACES_EXPORTER does not list sentry: Sentry is off"))
    elif "sentry_bridge" not in options.propagators and "sentry" not in options.propagators:
        found.append(
            ("note", "OTEL_PROPAGATORS lacks sentry_bridge: traces from Sentry SDKs (browsers) will not continue here")
        )
    if options.sampler.endswith("always_off") or (
        options.sampler.endswith("traceidratio") and options.sampler_arg == 0.0
    ):
        found.append(("warn", "the sampler keeps no traces (rate 0): only errors reach Sentry"))
    if "otlp" in env.get("OTEL_TRACES_EXPORTER", "").lower() and not any(
        env.get(name, "").strip() for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    ):
        found.append(
            (
                "note",
                "OTEL_TRACES_EXPORTER=otlp without OTEL_EXPORTER_OTLP_PROTOCOL: the bridge sends OTLP/HTTP, but "
                "OpenTelemetry's own configurator would pick gRPC (port 4317) for the same settings",
            )
        )
    from bridge.logs_probe import logs_problems

    found.extend(logs_problems(options, env))
    return found


class _Warnings(logging.Handler):
    """Collects the warnings the configuration logs while it is resolved (OTel's "warn and fall back")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self._logger = logging.getLogger("bridge")
        self._propagate = True

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> _Warnings:
        self._logger.addHandler(self)
        self._propagate, self._logger.propagate = self._logger.propagate, False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
