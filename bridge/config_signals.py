"""The lookups every setting goes through, and the metrics and logs legs' settings: OpenTelemetry's
per-signal variables (``OTEL_METRICS_*``, ``OTEL_LOGS_*``, ``OTEL_EXPORTER_OTLP_{METRICS,LOGS}_*``,
``OTEL_BLRP_*``), each falling back as the traces leg's do. Part of ``bridge.config.Options.resolve``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional

from bridge import config_parsers as parse
from bridge.errors import ConfigError

__all__ = [
    "SignalResolver",
    "METRICS_EXPORTER_NAMES",
    "LOGS_EXPORTER_NAMES",
    "DEFAULT_METRICS_ENDPOINT",
    "DEFAULT_OTLP_LOGS_ENDPOINT",
]

logger = logging.getLogger("bridge.config")  # the settings' warnings come from one logger

METRICS_EXPORTER_NAMES = ("otlp", "console", "none")
DEFAULT_METRICS_ENDPOINT = "http://localhost:4318/v1/metrics"
DEFAULT_OTLP_LOGS_ENDPOINT = "http://localhost:4318/v1/logs"
LOGS_EXPORTER_NAMES = ("otlp", "console", "none")


class SignalResolver:
    """The resolver's lookups (argument, else the first variable set, else the default; each value's
    source kept) and the metrics and logs settings; ``bridge.config``'s resolver builds on it."""

    arguments: dict[str, Any]
    environ: Mapping[str, str]
    values: dict[str, Any]
    sources: dict[str, str]

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
            self._take(f"{prefix}_{key}", (env + name,), parse.warn_int(default), default)
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

    def _resolve_metrics(self) -> None:
        """The metrics leg: OpenTelemetry's metric variables, each falling back as the traces leg's do."""
        traces_named = self.sources.get("exporters", "default") != "default"
        # Default otlp, as opentelemetry-distro sets it; but not when the traces leg was told to skip OTLP
        # (Sentry only): there is no collector to send metrics to then.
        default = ("otlp",) if self.values["exporters"].count("otlp") or not traces_named else ()
        exporters = self._take("metrics_exporters", ("OTEL_METRICS_EXPORTER",), parse.name_list, default)
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
            parse.headers,
            self.values["otlp_headers"] if inherit else {},
        )
        inherit = self.sources.get("otlp_timeout") == "argument"
        self._take(
            "metrics_timeout",
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            parse.positive_float,
            self.values["otlp_timeout"] if inherit else 10.0,
        )
        inherit = self.sources.get("otlp_compression") == "argument"
        self._take(
            "metrics_compression",
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
            parse.compression,
            self.values["otlp_compression"] if inherit else "none",
        )
        self._take("metric_export_interval_ms", ("OTEL_METRIC_EXPORT_INTERVAL",), parse.warn_int(60000), 60000)
        self._take("metric_export_timeout_ms", ("OTEL_METRIC_EXPORT_TIMEOUT",), parse.warn_int(30000), 30000)
        for key in ("metric_export_interval_ms", "metric_export_timeout_ms"):
            value = self.values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(key, value, "expected a positive integer (milliseconds)")
        self._take(
            "metrics_temporality",
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",),
            parse.temporality,
            "cumulative",
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
        self.values["metrics_endpoint"] = parse.http_url(setting, url, "the OTLP metrics endpoint")

    def _resolve_logs(self) -> None:
        """The logs leg's settings (bridge.logs), named as OpenTelemetry's SDKs name them."""
        exporters = self._take("logs_exporters", ("OTEL_LOGS_EXPORTER",), parse.name_list, ())
        for name in exporters:
            if name not in LOGS_EXPORTER_NAMES:
                setting = "logs_exporters" if self.sources["logs_exporters"] == "argument" else "OTEL_LOGS_EXPORTER"
                raise ConfigError(
                    setting, ",".join(exporters), f"unknown logs exporter {name!r}; known: otlp, console, none"
                )
        self.values["logs_exporters"] = tuple(name for name in exporters if name != "none")
        if self._take("logs_endpoint", (), parse.as_text, None) is None:
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
        setting = self.sources["logs_endpoint"].partition("(")[2].rstrip(")") or "logs_endpoint"
        self.values["logs_endpoint"] = parse.http_url(setting, self.values["logs_endpoint"], "the OTLP logs endpoint")
        self._take("logs_headers", ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"), parse.headers, {})
        self.values["logs_headers"] = dict(self.values["logs_headers"])
        timeouts = ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        self._take("logs_timeout", timeouts, parse.positive_float, 10.0)
        compressions = ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
        self._take("logs_compression", compressions, parse.compression, "none")
        if "otlp" in self.values["logs_exporters"]:
            name, value = self._env("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            if name and value and value != "http/protobuf":
                raise ConfigError(name, value, "the bridge sends OTLP logs over HTTP/protobuf only; use http/protobuf")
        self._batch_processor("blrp", schedule_delay=1000)  # the logs leg's BatchLogRecordProcessor
        signal = self._take("exception_signal", ("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN",), parse.name_list, ("span",))
        signal = signal if isinstance(signal, str) else ",".join(signal)
        # OTel's opt-in variables list several values; "logs/dup" wins over "logs".
        chosen = "logs/dup" if "logs/dup" in signal.split(",") else "logs" if "logs" in signal.split(",") else "span"
        if chosen == "span" and signal not in ("", "span"):
            if self.sources["exception_signal"] == "argument":
                raise ConfigError("exception_signal", signal, "expected span, logs or logs/dup")
            # OTel's opt-in variables ignore values they do not know (other conventions share the variable).
            logger.debug("OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=%r names no exception signal; span events", signal)
        self.values["exception_signal"] = chosen
