"""The configuration reference: every :class:`~bridge.config.Options` field, its variables, default and rule.

``docs/configuration.md`` is generated from this module (``python -m bridge.options_reference``), and a
test keeps it so: a field without an entry here, a variable the resolver reads that the page does not
name, or a page that differs from what this module renders fails the suite. What can be read from the
code is read from it: the defaults from the dataclass, and the variables of each option from the
resolver itself (it is run once with a recording ``_take``); only the words are written here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from bridge import config

__all__ = ["OptionDoc", "OPTIONS", "GROUPS", "variables_read", "variables_of", "render_markdown"]


@dataclass(frozen=True)
class OptionDoc:
    """The words for one option; variables and default come from the code unless given here."""

    group: str
    meaning: str
    rule: str = ""
    default: Optional[str] = None  # when the dataclass default is not what a user sees (computed ones)
    variables: Optional[tuple[str, ...]] = None  # for options the resolver reads by hand (not through _take)


GROUPS = (
    "General",
    "OTLP traces",
    "Sampling",
    "Propagation and the middleware",
    "Sentry",
    "Sentry transport",
    "Metrics",
    "Logs",
    "Scopes and integrations",
)

_OTEL_WARN = "OTel: not a positive integer: warn, default"
_SENTRY_BOOL = "Sentry booleans (`true/false, 1/0, yes/no, on/off`); other: ConfigError"

OPTIONS: dict[str, OptionDoc] = {
    "disabled": OptionDoc(
        "General",
        "`true` (any case): nothing is traced or exported, the app runs exactly as unwrapped",
        "OTel: only `true` is true; other values warn and mean false",
    ),
    "service_name": OptionDoc(
        "General",
        "the service (`service.name`)",
        "OTel",
        default="`service.name` of the resource, else `unknown_service`",
    ),
    "resource_attributes": OptionDoc(
        "General",
        "`k=v,k2=v2`, percent-decoded, added to the resource of every signal",
        "OTel: a malformed entry discards the variable (warn)",
    ),
    "exporters": OptionDoc(
        "General",
        "comma list of `otlp`, `sentry`, `console`, `none`: where spans go",
        "unknown names: ConfigError; `sentry` without a DSN: ConfigError",
        default="`otlp`, plus `sentry` when a DSN is set",
    ),
    "otlp_endpoint": OptionDoc(
        "OTLP traces",
        "where OTLP/HTTP traces go; the signal variable is used as is, the base one gets `/v1/traces` appended",
        "not an http(s) URL: ConfigError. `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL` "
        "other than `http/protobuf`: "
        "ConfigError (rather than silently sending HTTP to a gRPC port)",
        variables=("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ),
    "otlp_headers": OptionDoc(
        "OTLP traces",
        "`k=v,...`, percent-decoded, sent with every export",
        "malformed: ConfigError (values never echoed)",
    ),
    "otlp_timeout": OptionDoc(
        "OTLP traces",
        "seconds one export request may take",
        "opentelemetry-python reads seconds (the specification says milliseconds); the bridge does as the Python "
        "SDK does",
    ),
    "otlp_compression": OptionDoc("OTLP traces", "`gzip`, `deflate` or `none`", "other: ConfigError"),
    "bsp_schedule_delay_ms": OptionDoc("OTLP traces", "the batch span processor's delay between exports", _OTEL_WARN),
    "bsp_export_timeout_ms": OptionDoc("OTLP traces", "the batch span processor's export timeout (ms)", _OTEL_WARN),
    "bsp_max_queue_size": OptionDoc("OTLP traces", "spans waiting for export; more: dropped, counted", _OTEL_WARN),
    "bsp_max_export_batch_size": OptionDoc(
        "OTLP traces", "spans per export request at most", _OTEL_WARN + "; larger than the queue: the queue size"
    ),
    "sampler": OptionDoc(
        "Sampling",
        "one sampling decision for both backends (`always_on`, `always_off`, `traceidratio`, and their "
        "`parentbased_` forms)",
        "OTel: an unknown name in the variable warns and uses the default; as an argument: ConfigError",
        default="`parentbased_always_on`, or `parentbased_traceidratio` when `traces_sample_rate` is set",
        variables=("OTEL_TRACES_SAMPLER",),
    ),
    "sampler_arg": OptionDoc(
        "Sampling",
        "the ratio of the `traceidratio` samplers",
        "OTel: not a ratio in [0, 1]: warn, 1.0",
        default="1.0 for the ratio samplers, or `traces_sample_rate`",
        variables=("OTEL_TRACES_SAMPLER_ARG",),
    ),
    "traces_sample_rate": OptionDoc(
        "Sampling",
        "drives the OTel sampler (`parentbased_traceidratio`) when `OTEL_TRACES_SAMPLER` is unset; with both "
        "set, OTel governs and a warning says so",
        "outside [0, 1]: ConfigError",
    ),
    "sample_rate": OptionDoc(
        "Sampling",
        "share of error events sent to Sentry (errors are sent even for unsampled traces)",
        "outside [0, 1]: ConfigError",
    ),
    "propagators": OptionDoc(
        "Propagation and the middleware",
        "installed propagator names (`sentry` means `sentry_bridge`; see [Trace interop](interop.md))",
        "unknown: ConfigError",
        default="`tracecontext,baggage`, plus `sentry_bridge` when a DSN is set",
    ),
    "excluded_urls": OptionDoc(
        "Propagation and the middleware",
        "comma list of regular expressions searched in the request URL; matches are not traced",
        "OTel Python",
    ),
    "capture_request_headers": OptionDoc(
        "Propagation and the middleware",
        "request headers recorded as `http.request.header.<name>`",
        "OTel Python; without `send_default_pii`, private headers (Cookie, Authorization...) are always sanitized",
    ),
    "capture_response_headers": OptionDoc(
        "Propagation and the middleware",
        "response headers recorded as `http.response.header.<name>`",
        "OTel Python; Set-Cookie is always sanitized without `send_default_pii`",
    ),
    "sanitize_headers": OptionDoc(
        "Propagation and the middleware", "captured headers whose value shows `[REDACTED]`", "OTel Python"
    ),
    "dsn": OptionDoc(
        "Sentry",
        "`scheme://KEY@host[:port][/path]/PROJECT_ID`; unset means OTLP only (one info log line)",
        "malformed: ConfigError naming `SENTRY_DSN` and what is wrong",
    ),
    "environment": OptionDoc(
        "Sentry",
        "also added to the resource as `deployment.environment.name` when not set there",
        "Sentry",
        default="resource `deployment.environment.name`, else `production`",
    ),
    "release": OptionDoc(
        "Sentry",
        "also added to the resource as `service.version` when not set there",
        "Sentry",
        default="resource `service.version`",
    ),
    "send_default_pii": OptionDoc(
        "Sentry",
        "send client IPs, cookies, auth headers and unscrubbed query strings (both backends)",
        _SENTRY_BOOL,
    ),
    "debug": OptionDoc("Sentry", "verbose logging of the Sentry leg", _SENTRY_BOOL),
    "before_send": OptionDoc(
        "Sentry",
        "`before_send(event, hint) -> event or None` for every Sentry error and message event",
        "not callable: ConfigError",
    ),
    "in_app_include": OptionDoc("Sentry", 'module prefixes forced into "in app" frames'),
    "in_app_exclude": OptionDoc("Sentry", 'module prefixes forced out of "in app" frames'),
    "sentry_queue_size": OptionDoc("Sentry transport", "envelopes waiting for the Sentry transport at most"),
    "sentry_timeout": OptionDoc(
        "Sentry transport", "seconds one request to Sentry may take (connect, send, answer)", "> 0, else ConfigError"
    ),
    "shutdown_timeout": OptionDoc(
        "Sentry transport",
        "seconds `shutdown()` (and the flush at interpreter exit) may take",
        "> 0, else ConfigError",
    ),
    "metrics_exporters": OptionDoc(
        "Metrics",
        "comma list of `otlp`, `console`, `none`: where the HTTP server metrics go ([metrics](metrics.md))",
        "unknown names: ConfigError",
        default="`otlp` (as opentelemetry-distro sets it); none when `OTEL_TRACES_EXPORTER` is set without `otlp`",
    ),
    "metrics_endpoint": OptionDoc(
        "Metrics",
        "where OTLP/HTTP metrics go; the signal variable is used as is, the base one gets `/v1/metrics` appended; "
        "an `otlp_endpoint=` argument ending in `/v1/traces` gives its `/v1/metrics`",
        "not an http(s) URL: ConfigError. `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` other than `http/protobuf`: "
        "ConfigError",
        default="`http://localhost:4318/v1/metrics`",
        variables=("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ),
    "metrics_headers": OptionDoc(
        "Metrics",
        "`k=v,...` sent with every metrics export",
        "malformed: ConfigError (values never echoed)",
        default="unset (an `otlp_headers=` argument's)",
    ),
    "metrics_timeout": OptionDoc(
        "Metrics", "seconds one metrics export may take", "> 0, else ConfigError", default="10.0 (an `otlp_timeout=`)"
    ),
    "metrics_compression": OptionDoc(
        "Metrics", "`gzip`, `deflate` or `none`", "other: ConfigError", default="`none` (an `otlp_compression=`)"
    ),
    "metric_export_interval_ms": OptionDoc("Metrics", "milliseconds between two metrics exports", _OTEL_WARN),
    "metric_export_timeout_ms": OptionDoc("Metrics", "milliseconds one collection and export may take", _OTEL_WARN),
    "metrics_temporality": OptionDoc(
        "Metrics",
        "`cumulative`, `delta` (counters and histograms as deltas) or `lowmemory`",
        "other: ConfigError",
    ),
    "logs_exporters": OptionDoc(
        "Logs",
        "comma list of `otlp`, `console`, `none`: where Python `logging` records go as OpenTelemetry log records "
        "(see [Logs](logs.md))",
        "unknown names: ConfigError",
        default="unset (off: an app's logs usually already go somewhere)",
    ),
    "logs_endpoint": OptionDoc(
        "Logs",
        "where OTLP/HTTP log records go; the signal variable is used as is, the base one gets `/v1/logs` appended",
        "not an http(s) URL: ConfigError. With `otlp`, `OTEL_EXPORTER_OTLP_LOGS_PROTOCOL` or "
        "`OTEL_EXPORTER_OTLP_PROTOCOL` other than `http/protobuf`: ConfigError",
        variables=("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ),
    "logs_headers": OptionDoc(
        "Logs", "`k=v,...`, percent-decoded, sent with every log export", "malformed: ConfigError"
    ),
    "logs_timeout": OptionDoc("Logs", "seconds one log export request may take", "seconds, as `otlp_timeout`"),
    "logs_compression": OptionDoc("Logs", "`gzip`, `deflate` or `none`", "other: ConfigError"),
    "blrp_schedule_delay_ms": OptionDoc("Logs", "the batch log record processor's delay between exports", _OTEL_WARN),
    "blrp_export_timeout_ms": OptionDoc("Logs", "the batch log record processor's export timeout (ms)", _OTEL_WARN),
    "blrp_max_queue_size": OptionDoc("Logs", "records waiting for export; more: dropped", _OTEL_WARN),
    "blrp_max_export_batch_size": OptionDoc(
        "Logs", "records per export request at most", _OTEL_WARN + "; larger than the queue: the queue size"
    ),
    "exception_signal": OptionDoc(
        "Logs",
        "`span` (exception span events), `logs` (exception log records instead) or `logs/dup` (both) for the "
        "exceptions the bridge records; Sentry gets each error once in every mode",
        "OTel opt-in list: other values are ignored; `logs` needs a logs exporter, else span events stay; "
        "as an argument, an unknown value: ConfigError",
    ),
    "max_breadcrumbs": OptionDoc(
        "Scopes and integrations",
        "breadcrumbs kept per scope, and the last ones attached to each error and message event "
        "([scope API](scope-api.md))",
        "a whole number > 0, else ConfigError",
    ),
    "before_breadcrumb": OptionDoc(
        "Scopes and integrations",
        "`(crumb, hint) -> crumb or None` for every breadcrumb; None drops it",
        "a callable, else ConfigError; one that raises is logged once and the crumb kept",
    ),
    "include_local_variables": OptionDoc(
        "Scopes and integrations",
        "frame locals (`vars`) on exception events, collected and scrubbed as sentry-sdk does",
        "off by default: locals often hold user data",
    ),
    "default_integrations": OptionDoc(
        "Scopes and integrations",
        "sentry-sdk's default integrations: logging, excepthook, threading, dedupe, atexit",
        "",
    ),
    "integrations": OptionDoc(
        "Scopes and integrations",
        "integration objects with their own options, e.g. `LoggingIntegration(level=None)`",
        "",
    ),
    "disabled_integrations": OptionDoc(
        "Scopes and integrations",
        "integrations (objects or identifiers such as `\"logging\"`) left off",
        "",
    ),
}


def option_names() -> list[str]:
    """Every option `bridge.init()` takes, in the order the dataclass declares them."""
    return [f.name for f in dataclasses.fields(config.Options) if f.name != "sources"]


def variables_of() -> dict[str, tuple[str, ...]]:
    """Each option's variables, as the resolver itself names them (it is run once, recording ``_take``)."""
    found: dict[str, tuple[str, ...]] = {}
    original = config._Resolver._take

    def recording(self: Any, key: str, env_names: tuple[str, ...], parse: Any, default: Any) -> Any:
        found.setdefault(key, tuple(env_names))
        return original(self, key, env_names, parse, default)

    config._Resolver._take = recording  # type: ignore[method-assign]
    try:
        config.Options.resolve({}, {})
    finally:
        config._Resolver._take = original  # type: ignore[method-assign]
    return found


class _RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every name the resolver asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> str:
        self.asked.append(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.append(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_read() -> set[str]:
    """Every environment variable the resolver reads (each must be named on the page)."""
    environ = _RecordingEnviron()
    config.Options.resolve({}, environ)
    return set(environ.asked)


def _default_text(name: str) -> str:
    doc = OPTIONS[name]
    if doc.default is not None:
        return doc.default
    field = config.Options.__dataclass_fields__[name]
    if field.default is not dataclasses.MISSING:
        value: Any = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:  # pragma: no cover - every option has a default
        return ""
    if value is None or value == () or value == {}:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def render_markdown() -> str:
    """The whole ``docs/configuration.md`` page."""
    read_by_take = variables_of()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m bridge.options_reference > docs/configuration.md`; "
        "tests/test_docs.py keeps it so. Edit bridge/options_reference.py, not this page. -->",
        "",
        "`bridge.init(**options)` reads the standard variables of both ecosystems, each with its own parsing",
        "rules; a keyword argument overrides its variable, and a variable overrides the default. A value that",
        "must be fixed raises `bridge.ConfigError`, whose message names the setting and the value (for example",
        "`SENTRY_TRACES_SAMPLE_RATE='2': a sample rate must be between 0 and 1`). Where the OpenTelemetry",
        "specification says to warn and fall back, the bridge logs a warning and uses the default.",
        "`otel-sentry-bridge check` prints every option with its value and where it came from.",
        "",
    ]
    for group in GROUPS:
        names = [n for n in option_names() if OPTIONS[n].group == group]
        if not names:
            continue
        lines += [f"## {group}", "", "| option | variables | default | meaning | rule |", "|---|---|---|---|---|"]
        for name in names:
            doc = OPTIONS[name]
            variables = doc.variables if doc.variables is not None else read_by_take.get(name, ())
            shown = ", ".join(f"`{v}`" for v in variables) or "—"
            cells = [f"`{name}`", shown, _default_text(name), doc.meaning, doc.rule]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines.append("")
    lines += [
        "Calling `init()` again replaces the previous configuration: its queued data is flushed first and its",
        "exporters are stopped, so exporters are never doubled. Spans use the stable HTTP semantic conventions",
        "(`http.request.method`, `url.path`, `http.response.status_code`, ...);",
        "`OTEL_SEMCONV_STABILITY_OPT_IN=http/dup` adds the old ones (`http.method`, `http.target`, ...) too;",
        "any other value that does not name `http` gives the old ones only, as OpenTelemetry's instrumentations",
        "read it ([migrating from OpenTelemetry](migrating-from-opentelemetry.md)).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
