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
from urllib.parse import urlsplit

from bridge.config_parsers import TEMPORALITY_NAMES
from bridge.config_parsers import (
    as_text as _as_text,
)
from bridge.config_parsers import (
    comma_list as _comma_list,
)
from bridge.config_parsers import (
    compression as _compression,
)
from bridge.config_parsers import (
    headers as _headers,
)
from bridge.config_parsers import (
    http_url as _http_url,
)
from bridge.config_parsers import (
    name_list as _name_list,
)
from bridge.config_parsers import (
    otel_bool as _otel_bool,
)
from bridge.config_parsers import (
    positive_float as _positive_float,
)
from bridge.config_parsers import (
    rate as _rate,
)
from bridge.config_parsers import (
    resource_attributes as _resource_attributes,
)
from bridge.config_parsers import (
    sentry_bool as _sentry_bool,
)
from bridge.config_parsers import (
    temporality as _temporality,
)
from bridge.config_parsers import (
    warn_int as _warn_int,
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
METRICS_EXPORTER_NAMES = ("otlp", "console", "none")
DEFAULT_METRICS_ENDPOINT = "http://localhost:4318/v1/metrics"
DEFAULT_OTLP_LOGS_ENDPOINT = "http://localhost:4318/v1/logs"
LOGS_EXPORTER_NAMES = ("otlp", "console", "none")
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


class _Resolver:
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

    # -- lookup helpers ---------------------------------------------------------------------------
    def _env(self, *names: str) -> tuple[Optional[str], Optional[str]]:
        """The first of ``names`` that is set to a non-blank value: (name, value)."""
        for name in names:
            value = self.environ.get(name)
            if value is not None and value.strip() != "":
                return name, value.strip()
        return None, None

    def _take(self, key: str, env_names: tuple[str, ...], parse: Callable[[str, str], Any], default: Any) -> Any:
        if key in self.arguments and self.arguments[key] is not None:
            self.sources[key] = "argument"
            value = parse(key, self.arguments[key]) if isinstance(self.arguments[key], str) else self.arguments[key]
        else:
            name, raw = self._env(*env_names)
            if name is not None and raw is not None:
                self.sources[key] = f"environment ({name})"
                value = parse(name, raw)
            else:
                self.sources[key] = "default"
                value = default
        self.values[key] = value
        return value

    # -- resolution -------------------------------------------------------------------------------
    def resolve(self) -> Options:
        text = _as_text
        self._take("disabled", ("OTEL_SDK_DISABLED",), _otel_bool, False)
        self._take("service_name", ("OTEL_SERVICE_NAME",), text, None)
        resource = self._take("resource_attributes", ("OTEL_RESOURCE_ATTRIBUTES",), _resource_attributes, {})
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
        self._take("otlp_headers", ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), _headers, {})
        self._take(
            "otlp_timeout", ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"), _positive_float, 10.0
        )
        self._take(
            "otlp_compression",
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
            _compression,
            "none",
        )
        self._check_protocol()
        self._batch_processor("bsp", schedule_delay=5000)  # the traces leg's BatchSpanProcessor

        self._take("traces_sample_rate", ("SENTRY_TRACES_SAMPLE_RATE",), _rate, None)
        self._take("sample_rate", ("SENTRY_SAMPLE_RATE",), _rate, 1.0)
        for key in ("traces_sample_rate", "sample_rate"):
            if self.values[key] is not None:
                _rate(key, self.values[key])
        self._resolve_sampler()

        # With a DSN, Sentry's headers are understood too: traces from Sentry SDKs (browsers) continue here.
        default_propagators = ("tracecontext", "baggage") + (("sentry_bridge",) if self.values["dsn"] else ())
        self._take("propagators", ("OTEL_PROPAGATORS",), _name_list, default_propagators)
        self._take("excluded_urls", ("OTEL_PYTHON_WSGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"), _comma_list, ())
        capture = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"
        self._take("capture_request_headers", (capture + "SERVER_REQUEST",), _comma_list, ())
        self._take("capture_response_headers", (capture + "SERVER_RESPONSE",), _comma_list, ())
        self._take("sanitize_headers", (capture + "SANITIZE_FIELDS",), _comma_list, ())

        self._take("environment", ("SENTRY_ENVIRONMENT",), text, None)
        self._take("release", ("SENTRY_RELEASE",), text, None)
        self._take("send_default_pii", ("SENTRY_SEND_DEFAULT_PII",), _sentry_bool(False), False)
        self._take("debug", ("SENTRY_DEBUG",), _sentry_bool(False), False)
        self._take("before_send", (), text, None)
        self._take("in_app_include", (), _comma_list, ())
        self._take("in_app_exclude", (), _comma_list, ())
        self._take("sentry_queue_size", (), _warn_int(1000), 1000)
        self.values["sentry_timeout"] = _positive_float(
            "sentry_timeout", self._take("sentry_timeout", (), _positive_float, 5.0)
        )
        self._take("shutdown_timeout", (), _positive_float, 2.0)
        self._take("max_breadcrumbs", (), _warn_int(100), 100)
        self._take("before_breadcrumb", (), text, None)
        self._take("include_local_variables", (), _sentry_bool(False), False)
        self._take("default_integrations", (), _sentry_bool(True), True)
        self._take("integrations", (), _comma_list, ())
        self._take("disabled_integrations", (), _comma_list, ())
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
        exporters = self._take("exporters", ("OTEL_TRACES_EXPORTER",), _name_list, None)
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

    def _resolve_metrics(self) -> None:
        """The metrics leg: OpenTelemetry's metric variables, each falling back as the traces leg's do."""
        traces_named = self.sources.get("exporters", "default") != "default"
        # Default otlp, as opentelemetry-distro sets it; but not when the traces leg was told to skip OTLP
        # (Sentry only): there is no collector to send metrics to then.
        default = ("otlp",) if self.values["exporters"].count("otlp") or not traces_named else ()
        exporters = self._take("metrics_exporters", ("OTEL_METRICS_EXPORTER",), _name_list, default)
        for name in exporters:
            if name not in METRICS_EXPORTER_NAMES:
                given = self.sources["metrics_exporters"] == "argument"
                setting = "metrics_exporters" if given else "OTEL_METRICS_EXPORTER"
                raise ConfigError(
                    setting,
                    ",".join(exporters),
                    f"unknown metrics exporter {name!r}; known: {', '.join(METRICS_EXPORTER_NAMES)}",
                )
        self.values["metrics_exporters"] = tuple(name for name in exporters if name != "none")
        self._resolve_metrics_endpoint()
        inherit = self.sources.get("otlp_headers") == "argument"
        self._take(
            "metrics_headers",
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
            _headers,
            self.values["otlp_headers"] if inherit else {},
        )
        inherit = self.sources.get("otlp_timeout") == "argument"
        self._take(
            "metrics_timeout",
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            _positive_float,
            self.values["otlp_timeout"] if inherit else 10.0,
        )
        inherit = self.sources.get("otlp_compression") == "argument"
        self._take(
            "metrics_compression",
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
            _compression,
            self.values["otlp_compression"] if inherit else "none",
        )
        self._take("metric_export_interval_ms", ("OTEL_METRIC_EXPORT_INTERVAL",), _warn_int(60000), 60000)
        self._take("metric_export_timeout_ms", ("OTEL_METRIC_EXPORT_TIMEOUT",), _warn_int(30000), 30000)
        for key in ("metric_export_interval_ms", "metric_export_timeout_ms"):
            value = self.values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(key, value, "expected a positive integer (milliseconds)")
        self._take(
            "metrics_temporality", ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",), _temporality, "cumulative"
        )
        name, value = self._env("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        if name and value and value != "http/protobuf" and self.values["metrics_exporters"].count("otlp"):
            raise ConfigError(
                name, value, "the bridge exports OTLP over HTTP with protobuf only; use http/protobuf (port 4318)"
            )

    def _resolve_metrics_endpoint(self) -> None:
        """``metrics_endpoint``, else OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (as is), else ``otlp_endpoint=`` given
        as an argument with its ``/v1/traces`` made ``/v1/metrics``, else OTEL_EXPORTER_OTLP_ENDPOINT +
        ``/v1/metrics``, else localhost."""
        argument = self.arguments.get("metrics_endpoint")
        if argument is not None:
            setting, url, source = "metrics_endpoint", argument, "argument"
        else:
            name, value = self._env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
            traces = self.values["otlp_endpoint"]
            if name and value:
                setting, url = name, value
            elif self.sources.get("otlp_endpoint") == "argument" and str(traces).rstrip("/").endswith("/v1/traces"):
                setting, url = "otlp_endpoint", str(traces).rstrip("/")[: -len("/v1/traces")] + "/v1/metrics"
            else:
                name, value = self._env("OTEL_EXPORTER_OTLP_ENDPOINT")
                if name and value:
                    setting, url = name, value.rstrip("/") + "/v1/metrics"
                else:
                    setting, url = "default", DEFAULT_METRICS_ENDPOINT
            source = {"default": "default", "otlp_endpoint": "argument (otlp_endpoint)"}.get(
                setting, f"environment ({setting})"
            )
        self.sources["metrics_endpoint"] = source
        self.values["metrics_endpoint"] = _http_url(setting, url, "the OTLP metrics endpoint")

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
        if not isinstance(url, str):
            raise ConfigError(setting, url, "the OTLP endpoint must be an http:// or https:// URL")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ConfigError(setting, url, f"not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(setting, url, "the OTLP endpoint must be an http:// or https:// URL with a host")
        self.values["otlp_endpoint"] = url

    def _resolve_logs(self) -> None:
        """The logs leg's settings (bridge.logs), named as OpenTelemetry's SDKs name them."""
        exporters = self._take("logs_exporters", ("OTEL_LOGS_EXPORTER",), _name_list, ())
        for name in exporters:
            if name not in LOGS_EXPORTER_NAMES:
                setting = "logs_exporters" if self.sources["logs_exporters"] == "argument" else "OTEL_LOGS_EXPORTER"
                raise ConfigError(
                    setting, ",".join(exporters), f"unknown logs exporter {name!r}; known: otlp, console, none"
                )
        self.values["logs_exporters"] = tuple(name for name in exporters if name != "none")
        if self._take("logs_endpoint", (), _as_text, None) is None:
            name, value = self._env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
            if name and value:  # the signal-specific endpoint is used as is
                self.values["logs_endpoint"], self.sources["logs_endpoint"] = value, f"environment ({name})"
            else:
                name, value = self._env("OTEL_EXPORTER_OTLP_ENDPOINT")
                if name and value:  # the base endpoint gets the signal path appended
                    self.values["logs_endpoint"] = value.rstrip("/") + "/v1/logs"
                    self.sources["logs_endpoint"] = f"environment ({name})"
                else:
                    self.values["logs_endpoint"] = DEFAULT_OTLP_LOGS_ENDPOINT
        url = self.values["logs_endpoint"]
        setting = self.sources["logs_endpoint"]
        try:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is not None:
                parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                setting.partition("(")[2].rstrip(")") or "logs_endpoint",
                url,
                "the OTLP logs endpoint must be an http:// or https:// URL with a host",
            )
        self._take("logs_headers", ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), _headers, {})
        self.values["logs_headers"] = dict(self.values["logs_headers"])
        timeouts = ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        self._take("logs_timeout", timeouts, _positive_float, 10.0)
        compressions = ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
        self._take("logs_compression", compressions, _compression, "none")
        if "otlp" in self.values["logs_exporters"]:
            name, value = self._env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            if name and value and value != "http/protobuf":
                raise ConfigError(name, value, "the bridge sends OTLP logs over HTTP/protobuf only; use http/protobuf")
        self._batch_processor("blrp", schedule_delay=1000)  # the logs leg's BatchLogRecordProcessor
        signal = self._take("exception_signal", ("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN",), _name_list, ("span",))
        signal = signal if isinstance(signal, str) else ",".join(signal)
        # OTel's opt-in variables list several values; "logs/dup" wins over "logs".
        chosen = "logs/dup" if "logs/dup" in signal.split(",") else "logs" if "logs" in signal.split(",") else "span"
        if chosen == "span" and signal not in ("", "span"):
            if self.sources["exception_signal"] == "argument":
                raise ConfigError("exception_signal", signal, "expected span, logs or logs/dup")
            # OTel's opt-in variables ignore values they do not know (other conventions share the variable).
            logger.debug("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=%r names no exception signal; span events", signal)
        self.values["exception_signal"] = chosen

    def _batch_processor(self, prefix: str, schedule_delay: int) -> None:
        """OpenTelemetry's batch processor settings, ``OTEL_BSP_*`` or ``OTEL_BLRP_*`` (``prefix``): not a positive
        integer warns and means the default; a batch larger than the queue is cut to the queue's size."""
        env = f"OTEL_{prefix.upper()}_"
        for key, name, default in (
            ("schedule_delay_ms", "SCHEDULE_DELAY", schedule_delay),
            ("export_timeout_ms", "EXPORT_TIMEOUT", 30000),
            ("max_queue_size", "MAX_QUEUE_SIZE", 2048),
            ("max_export_batch_size", "MAX_EXPORT_BATCH_SIZE", 512),
        ):
            self._take(f"{prefix}_{key}", (env + name,), _warn_int(default), default)
        batch, queue = f"{prefix}_max_export_batch_size", f"{prefix}_max_queue_size"
        if self.values[batch] > self.values[queue]:
            logger.warning(
                "%sMAX_EXPORT_BATCH_SIZE=%s is larger than %sMAX_QUEUE_SIZE=%s; using the queue size",
                env,
                self.values[batch],
                env,
                self.values[queue],
            )
            self.values[batch] = self.values[queue]

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
                    arg = _rate("sampler_arg", self.arguments["sampler_arg"])
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
