"""Options: keyword arguments, then the environment (OTel's and Sentry's own variables), then defaults.

Every value remembers where it came from (``Options.sources``), for ``otel-sentry-bridge check``.
A value the user must fix raises :class:`~bridge.errors.ConfigError` naming the setting and the value;
where the OpenTelemetry specification says "warn and fall back" (sampler names and arguments, batch
processor numbers, resource attributes) the bridge logs a warning and uses the default instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from bridge import config_parsers as parse
from bridge.config_parsers import TEMPORALITY_NAMES
from bridge.config_signals import (
    DEFAULT_METRICS_ENDPOINT,
    DEFAULT_OTLP_LOGS_ENDPOINT,
    METRICS_EXPORTER_NAMES,
    SignalResolver,
)
from bridge.errors import ConfigError
from bridge.sentry.dsn import Dsn

__all__ = [
    "Options",
    "ConfigError",
    "BeforeSend",
    "EXPORTER_NAMES",
    "SAMPLER_NAMES",
    "METRICS_EXPORTER_NAMES",
    "TEMPORALITY_NAMES",
]

logger = logging.getLogger(__name__)

BeforeSend = Callable[[dict[str, Any], dict[str, Any]], Optional[dict[str, Any]]]

EXPORTER_NAMES = ("otlp", "sentry", "console", "none")
SAMPLER_NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318/v1/traces"
EXCEPTION_SIGNALS = ("span", "logs", "logs/dup")  # OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN (unset: span events)


@dataclass(frozen=True)
class Options:
    """The bridge's effective configuration. Build it with :meth:`Options.resolve`."""

    disabled: bool = False
    service_name: str = "unknown_service"
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    exporters: tuple[str, ...] = ("otlp",)
    # OTLP leg
    otlp_endpoint: str = DEFAULT_OTLP_ENDPOINT
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    otlp_timeout: float = 10.0
    otlp_compression: str = "none"
    bsp_schedule_delay_ms: int = 5000
    bsp_export_timeout_ms: int = 30000
    bsp_max_queue_size: int = 2048
    bsp_max_export_batch_size: int = 512
    # sampling (one decision for both outputs)
    sampler: str = "parentbased_always_on"
    sampler_arg: Optional[float] = None
    # propagation and the WSGI middleware
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    excluded_urls: tuple[str, ...] = ()
    capture_request_headers: tuple[str, ...] = ()
    capture_response_headers: tuple[str, ...] = ()
    sanitize_headers: tuple[str, ...] = ()
    # Sentry leg
    dsn: Optional[Dsn] = None
    environment: Optional[str] = None
    release: Optional[str] = None
    traces_sample_rate: Optional[float] = None
    sample_rate: float = 1.0
    send_default_pii: bool = False
    debug: bool = False
    before_send: Optional[BeforeSend] = None
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()
    sentry_queue_size: int = 1000
    sentry_timeout: float = 5.0
    shutdown_timeout: float = 2.0
    # metrics leg (bridge.metrics): HTTP server metrics over OTLP/HTTP
    metrics_exporters: tuple[str, ...] = ("otlp",)
    metrics_endpoint: str = DEFAULT_METRICS_ENDPOINT
    metrics_headers: Mapping[str, str] = field(default_factory=dict)
    metrics_timeout: float = 10.0
    metrics_compression: str = "none"
    metric_export_interval_ms: int = 60000
    metric_export_timeout_ms: int = 30000
    metrics_temporality: str = "cumulative"
    # logs leg (bridge.logs): off unless OTEL_LOGS_EXPORTER names an exporter
    logs_exporters: tuple[str, ...] = ()
    logs_endpoint: str = DEFAULT_OTLP_LOGS_ENDPOINT
    logs_headers: Mapping[str, str] = field(default_factory=dict)
    logs_timeout: float = 10.0
    logs_compression: str = "none"
    blrp_schedule_delay_ms: int = 1000
    blrp_export_timeout_ms: int = 30000
    blrp_max_queue_size: int = 2048
    blrp_max_export_batch_size: int = 512
    exception_signal: str = "span"
    # scopes, breadcrumbs and sentry-sdk's default integrations (docs/scope-api.md)
    max_breadcrumbs: int = 100
    before_breadcrumb: Optional[Callable[..., Any]] = None
    include_local_variables: bool = False
    default_integrations: bool = True
    integrations: tuple[Any, ...] = ()
    disabled_integrations: tuple[Any, ...] = ()
    # where each value came from: "argument", "environment (NAME)" or "default"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def resolve(
        cls, arguments: Optional[Mapping[str, Any]] = None, environ: Optional[Mapping[str, str]] = None
    ) -> Options:
        """Options from keyword ``arguments`` over ``environ`` (default ``os.environ``) over defaults."""
        return _Resolver(dict(arguments or {}), os.environ if environ is None else environ).resolve()

    @property
    def otlp_enabled(self) -> bool:
        return "otlp" in self.exporters

    @property
    def sentry_enabled(self) -> bool:
        return "sentry" in self.exporters and self.dsn is not None

    @property
    def metrics_enabled(self) -> bool:
        return bool(self.metrics_exporters)

    @property
    def logs_enabled(self) -> bool:
        return bool(self.logs_exporters)


_FIELDS = {f.name for f in Options.__dataclass_fields__.values()} - {"sources"}


class _Resolver(SignalResolver):
    def __init__(self, arguments: dict[str, Any], environ: Mapping[str, str]) -> None:
        unknown = sorted(set(arguments) - _FIELDS)
        if unknown:
            raise ConfigError(
                unknown[0], arguments[unknown[0]], f"unknown option; known options: {', '.join(sorted(_FIELDS))}"
            )
        self.arguments = arguments
        self.environ = environ
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    # -- resolution -------------------------------------------------------------------------------
    def resolve(self) -> Options:
        text = parse.as_text
        self._take("disabled", ("OTEL_SDK_DISABLED",), parse.otel_bool, False)
        self._take("service_name", ("OTEL_SERVICE_NAME",), text, None)
        resource = self._take("resource_attributes", ("OTEL_RESOURCE_ATTRIBUTES",), parse.resource_attributes, {})
        if self.values["service_name"] is None:
            self.values["service_name"] = resource.get("service.name", "unknown_service")

        self._take("dsn", ("SENTRY_DSN",), lambda n, v: Dsn.parse(v, n), None)
        if isinstance(self.values["dsn"], str):
            self.values["dsn"] = Dsn.parse(self.values["dsn"], "dsn")
        elif self.values["dsn"] is not None and not isinstance(self.values["dsn"], Dsn):
            raise ConfigError("dsn", self.values["dsn"], "a DSN must be a string like https://KEY@host/PROJECT_ID")
        self._resolve_exporters()

        self._take("otlp_endpoint", (), text, None)
        self._resolve_otlp_endpoint()
        self._take(
            "otlp_headers", ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), parse.headers, {}
        )
        self._take(
            "otlp_timeout",
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            parse.positive_float,
            10.0,
        )
        self._take(
            "otlp_compression",
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
            parse.compression,
            "none",
        )
        self._check_protocol()
        self._batch_processor("bsp", schedule_delay=5000)  # the traces leg's BatchSpanProcessor

        self._take("traces_sample_rate", ("SENTRY_TRACES_SAMPLE_RATE",), parse.rate, None)
        self._take("sample_rate", ("SENTRY_SAMPLE_RATE",), parse.rate, 1.0)
        for key in ("traces_sample_rate", "sample_rate"):
            if self.values[key] is not None:
                parse.rate(key, self.values[key])
        self._resolve_sampler()

        # With a DSN, Sentry's headers are understood too: traces from Sentry SDKs (browsers) continue here.
        default_propagators = ("tracecontext", "baggage") + (("sentry_bridge",) if self.values["dsn"] else ())
        self._take("propagators", ("OTEL_PROPAGATORS",), parse.name_list, default_propagators)
        self._take(
            "excluded_urls", ("OTEL_PYTHON_WSGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"), parse.comma_list, ()
        )
        capture = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"
        self._take("capture_request_headers", (capture + "SERVER_REQUEST",), parse.comma_list, ())
        self._take("capture_response_headers", (capture + "SERVER_RESPONSE",), parse.comma_list, ())
        self._take("sanitize_headers", (capture + "SANITIZE_FIELDS",), parse.comma_list, ())

        self._take("environment", ("SENTRY_ENVIRONMENT",), text, None)
        self._take("release", ("SENTRY_RELEASE",), text, None)
        self._take("send_default_pii", ("SENTRY_SEND_DEFAULT_PII",), parse.sentry_bool(False), False)
        self._take("debug", ("SENTRY_DEBUG",), parse.sentry_bool(False), False)
        self._take("before_send", (), text, None)
        self._take("in_app_include", (), parse.comma_list, ())
        self._take("in_app_exclude", (), parse.comma_list, ())
        self._take("sentry_queue_size", (), parse.warn_int(1000), 1000)
        self.values["sentry_timeout"] = parse.positive_float(
            "sentry_timeout", self._take("sentry_timeout", (), parse.positive_float, 5.0)
        )
        self._take("shutdown_timeout", (), parse.positive_float, 2.0)
        self._take("max_breadcrumbs", (), parse.warn_int(100), 100)
        self._take("before_breadcrumb", (), text, None)
        self._take("include_local_variables", (), parse.sentry_bool(False), False)
        self._take("default_integrations", (), parse.sentry_bool(True), True)
        self._take("integrations", (), parse.comma_list, ())
        self._take("disabled_integrations", (), parse.comma_list, ())
        if self.values["before_breadcrumb"] is not None and not callable(self.values["before_breadcrumb"]):
            raise ConfigError(
                "before_breadcrumb",
                self.values["before_breadcrumb"],
                "must be a callable (crumb, hint) -> crumb or None",
            )
        if not isinstance(self.values["max_breadcrumbs"], int) or self.values["max_breadcrumbs"] < 0:
            raise ConfigError("max_breadcrumbs", self.values["max_breadcrumbs"], "must be a whole number >= 0")
        self._resolve_metrics()
        if self.values["before_send"] is not None and not callable(self.values["before_send"]):
            raise ConfigError(
                "before_send", self.values["before_send"], "must be a callable (event, hint) -> event or None"
            )
        self._resolve_logs()
        for key in (
            "propagators",
            "excluded_urls",
            "capture_request_headers",
            "capture_response_headers",
            "sanitize_headers",
            "in_app_include",
            "in_app_exclude",
            "exporters",
            "integrations",
            "disabled_integrations",
            "metrics_exporters",
        ):
            self.values[key] = tuple(self.values[key])
        self.values["resource_attributes"] = dict(self.values["resource_attributes"])
        self.values["otlp_headers"] = dict(self.values["otlp_headers"])
        self.values["metrics_headers"] = dict(self.values["metrics_headers"])
        return Options(**self.values, sources=dict(self.sources))

    def _resolve_exporters(self) -> None:
        exporters = self._take("exporters", ("OTEL_TRACES_EXPORTER",), parse.name_list, None)
        dsn = self.values["dsn"]
        if exporters is None:
            exporters = ("otlp", "sentry") if dsn is not None else ("otlp",)
            if dsn is None:
                logger.info("otel-sentry-bridge: no SENTRY_DSN set; exporting OTLP only")
        for name in exporters:
            if name not in EXPORTER_NAMES:
                setting = "exporters" if self.sources["exporters"] == "argument" else "OTEL_TRACES_EXPORTER"
                raise ConfigError(
                    setting, ",".join(exporters), f"unknown exporter {name!r}; known: {', '.join(EXPORTER_NAMES)}"
                )
        exporters = tuple(name for name in exporters if name != "none")
        if "sentry" in exporters and dsn is None:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER", ",".join(exporters), "the sentry exporter needs SENTRY_DSN (or dsn=)"
            )
        self.values["exporters"] = exporters

    def _resolve_otlp_endpoint(self) -> None:
        if self.values["otlp_endpoint"] is not None:
            setting, url = "otlp_endpoint", self.values["otlp_endpoint"]
        else:
            name, value = self._env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            if name and value:  # the signal-specific endpoint is used as is
                setting, url = name, value
            else:
                name, value = self._env("OTEL_EXPORTER_OTLP_ENDPOINT")
                if name and value:  # the base endpoint gets the signal path appended
                    setting, url = name, value.rstrip("/") + "/v1/traces"
                else:
                    setting, url = "default", DEFAULT_OTLP_ENDPOINT
            self.sources["otlp_endpoint"] = "default" if setting == "default" else f"environment ({setting})"
        self.values["otlp_endpoint"] = parse.http_url(setting, url, "the OTLP endpoint")

    def _check_protocol(self) -> None:
        name, value = self._env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        if name and value and value != "http/protobuf":
            raise ConfigError(
                name, value, "the bridge exports OTLP over HTTP with protobuf only; use http/protobuf (port 4318)"
            )

    def _resolve_sampler(self) -> None:
        name, raw = self._env("OTEL_TRACES_SAMPLER")
        arg_name, raw_arg = self._env("OTEL_TRACES_SAMPLER_ARG")
        rate = self.values["traces_sample_rate"]
        if "sampler" in self.arguments:
            sampler, source = str(self.arguments["sampler"]).strip().lower(), "argument"
            setting = "sampler"
        elif name and raw:
            sampler, source, setting = raw.lower(), f"environment ({name})", name
        else:
            sampler, source, setting = "", "", ""
        if sampler and sampler not in SAMPLER_NAMES:
            if setting == "sampler":
                raise ConfigError("sampler", sampler, f"unknown sampler; known: {', '.join(SAMPLER_NAMES)}")
            # OTel specification: an unknown sampler is a warning, and the default is used.
            logger.warning("%s=%r is not a known sampler; using parentbased_always_on", setting, raw)
            sampler = ""
        if sampler:
            if rate is not None:
                logger.warning(
                    "Both %s and SENTRY_TRACES_SAMPLE_RATE/traces_sample_rate are set: the OpenTelemetry sampler "
                    "governs both outputs and the Sentry rate is ignored",
                    setting,
                )
            arg: Optional[float] = None
            if sampler.endswith("traceidratio"):
                arg = 1.0
                if "sampler_arg" in self.arguments:
                    arg = parse.rate("sampler_arg", self.arguments["sampler_arg"])
                elif raw_arg is not None:
                    try:
                        arg = float(raw_arg)
                        if not 0.0 <= arg <= 1.0:
                            raise ValueError
                    except ValueError:
                        logger.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio in [0, 1]; using 1.0", raw_arg)
                        arg = 1.0
            self.values["sampler"], self.values["sampler_arg"] = sampler, arg
            self.sources["sampler"] = source
        elif rate is not None:
            # Sentry's traces_sample_rate drives the one OTel sampler, so both backends hold the same traces.
            self.values["sampler"], self.values["sampler_arg"] = "parentbased_traceidratio", float(rate)
            self.sources["sampler"] = self.sources["traces_sample_rate"]
        else:
            self.values["sampler"], self.values["sampler_arg"] = "parentbased_always_on", None
            self.sources["sampler"] = "default"
        self.sources["sampler_arg"] = self.sources["sampler"]
