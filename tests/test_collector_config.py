"""collector-config/: every file loads in the real OpenTelemetry Collector, and the files hold together.

The collector is the one ``scripts/otelcol.sh`` builds from ``scripts/otelcol-builder.yaml`` (the
``otelcol`` fixture). Each file, and each overlay combination the docs give, passes ``otelcol validate``;
the binary holds exactly the components the files use; the release is pinned once (the manifest) and
every YAML header and doc names it. Structural checks that validation cannot make stay: the tiers agree on
ports and routing, memory_limiter comes first, every ${env:...} has a default, the Sentry route is
exclusive, single-node samples like tier 2. What tail sampling keeps is judged by running single-node.yaml
with the bridge's real spans (the two-tier path is ``test_collector_e2e.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.peers.otelcol import validate

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "collector-config"
MANIFEST = ROOT / "scripts" / "otelcol-builder.yaml"
# The one pin: dist.version of the builder manifest. Everything else that names a release must agree.
PINNED_VERSION: str = yaml.safe_load(MANIFEST.read_text())["dist"]["version"]
DOCS = (ROOT / "docs" / "collector.md", ROOT / "docs" / "scaling.md", CONFIG_DIR / "README.md")
# Components the binary carries beyond what the files use today (authenticated exporters).
EXTRA_COMPONENTS = {"extensions": {"bearertokenauth"}}
# Type names the files still use that the release lists under a new name (deprecated aliases; see docs).
RENAMED = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"}
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")

BASE_FILES = (
    "agent.yaml",
    "gateway-tier1-loadbalancer.yaml",
    "gateway-tier2-sampler.yaml",
    "single-node.yaml",
)
OVERLAY = "sentry-otlp-route.yaml"
# What the docs tell people to run: each base file alone, and the overlay on top of a sampler.
CONFIG_SETS = [(name,) for name in BASE_FILES] + [
    ("gateway-tier2-sampler.yaml", OVERLAY),
    ("single-node.yaml", OVERLAY),
]
SAMPLERS = ("gateway-tier2-sampler.yaml", "single-node.yaml")
BRIDGE_SERVE_DEFAULT = "http://127.0.0.1:4318/v1/traces"  # `otel-sentry-bridge serve`'s default listen + path
DIRECT_MARKER = "otel_sentry_bridge.sentry_direct"
# "OpenTelemetry Collector 0.161.0", "otelcol-contrib 0.161.0", "opentelemetry-collector-contrib:0.161.0"...
_RELEASE_MENTION = re.compile(r"(?:Collector|collector-contrib|otelcol(?:-contrib|-bridge)?)[ :]v?(\d+\.\d+\.\d+)")

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ENV_WITH_DEFAULT = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*):-(.*)")


def _raw(name: str) -> str:
    return (CONFIG_DIR / name).read_text(encoding="utf-8")


def _expand(value: Any) -> Any:
    """Resolve placeholders with their defaults as the Collector does with the variables unset.

    A scalar that is one placeholder takes the default parsed as YAML (so `true` is a bool); a placeholder
    inside a longer string is substituted as text.
    """
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item) for item in value]
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        default = _default_of(whole.group(1))
        return yaml.safe_load(default) if default else ""  # the Collector expands an empty default to ""
    return _PLACEHOLDER.sub(lambda m: _default_of(m.group(1)), value)


def _default_of(reference: str) -> str:
    match = _ENV_WITH_DEFAULT.fullmatch(reference)
    assert match, f"${{{reference}}} is not ${{env:NAME:-default}}"
    return match.group(2)


def _merge(base: Any, overlay: Any) -> Any:
    """The Collector's merge of several --config files: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return overlay


def load(*names: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name in names:
        config = _merge(config, yaml.safe_load(_raw(name)))
    return _expand(config)


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return config["service"]["pipelines"]


def routes(config: dict[str, Any], receiver: str, signal: str = "traces") -> Iterator[tuple[list[str], str]]:
    """Every way `signal` data entering at `receiver` reaches an exporter: (processors passed in order, exporter)."""

    def walk(source: str, passed: list[str], seen: tuple[str, ...]) -> Iterator[tuple[list[str], str]]:
        for pipeline_id, pipeline in pipelines(config).items():
            if source not in pipeline["receivers"] or pipeline_id in seen or _type(pipeline_id) != signal:
                continue
            chain = passed + list(pipeline.get("processors", []))
            for exporter in pipeline["exporters"]:
                if exporter in config.get("connectors", {}):
                    yield from walk(exporter, chain, (*seen, pipeline_id))
                else:
                    yield chain, exporter

    yield from walk(receiver, [], ())


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


# --- the files ---------------------------------------------------------------------------------------


def test_every_yaml_file_in_the_directory_is_checked() -> None:
    on_disk = {path.name for path in CONFIG_DIR.glob("*.y*ml")}
    assert on_disk == {*BASE_FILES, OVERLAY}


@pytest.mark.parametrize("name", [*BASE_FILES, OVERLAY])
def test_file_parses_and_names_the_pinned_version(name: str) -> None:
    document = yaml.safe_load(_raw(name))
    assert isinstance(document, dict)
    assert set(document) <= {*SECTIONS, "service"}, f"{name}: unknown top-level keys"
    header = "".join(line for line in _raw(name).splitlines(keepends=True) if line.startswith("#"))
    assert f"OpenTelemetry Collector {PINNED_VERSION}" in header, f"{name} does not say which release it is for"
    assert set(_RELEASE_MENTION.findall(_raw(name))) == {PINNED_VERSION}, f"{name} names another release"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_docs_name_the_pinned_release(doc: Path) -> None:
    mentions = set(_RELEASE_MENTION.findall(doc.read_text(encoding="utf-8")))
    assert mentions == {PINNED_VERSION}, f"{doc.name} names {mentions}, the manifest pins {PINNED_VERSION}"


def test_manifest_pins_every_module_at_the_one_release() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    minor = int(PINNED_VERSION.split(".")[1])
    # Each collector release ships its unstable modules as v0.N.0 and its stable ones as v1.(N-94).0.
    allowed = {f"v{PINNED_VERSION}", f"v1.{minor - 94}.0"}
    modules = [m["gomod"] for section in (*SECTIONS, "providers") for m in manifest.get(section, [])]
    assert len(modules) >= 10
    for gomod in modules:
        path, version = gomod.split()
        assert path.startswith(
            ("go.opentelemetry.io/collector/", "github.com/open-telemetry/opentelemetry-collector-contrib/")
        )
        assert version in allowed, f"{path} is at {version}, not at the collector release {PINNED_VERSION}"


@pytest.mark.parametrize("name", [*BASE_FILES, OVERLAY])
def test_every_env_reference_has_a_default(name: str) -> None:
    text = _raw(name)
    references = _PLACEHOLDER.findall(text)
    for reference in references:
        match = _ENV_WITH_DEFAULT.fullmatch(reference)
        assert match, f"{name}: ${{{reference}}} needs the form ${{env:NAME:-default}}"
        # Empty only for an optional file (the TLS files towards serve: unset means "system roots, no client cert").
        assert match.group(2) or match.group(1).endswith("_FILE"), f"{name}: ${{{reference}}} has an empty default"
    bare = re.findall(r"\$(?![{$])\w+", text)
    assert not bare, f"{name}: bare $VARIABLE references {bare}"


# --- each configuration as the Collector would assemble it --------------------------------------------


@pytest.fixture(params=CONFIG_SETS, ids=lambda names: "+".join(names))
def config_names(request: pytest.FixtureRequest) -> tuple[str, ...]:
    names: tuple[str, ...] = request.param
    return names


@pytest.fixture
def config(config_names: tuple[str, ...]) -> dict[str, Any]:
    return load(*config_names)


def test_pipelines_name_only_components_the_file_defines(config: dict[str, Any]) -> None:
    defined = {section: set(config.get(section) or {}) for section in SECTIONS}
    assert pipelines(config), "no pipelines"
    for pipeline_id, pipeline in pipelines(config).items():
        assert _type(pipeline_id) in ("traces", "metrics", "logs"), pipeline_id
        assert pipeline["receivers"] and pipeline["exporters"], f"{pipeline_id} needs a receiver and an exporter"
        assert set(pipeline["receivers"]) <= defined["receivers"] | defined["connectors"], pipeline_id
        assert set(pipeline.get("processors", [])) <= defined["processors"], pipeline_id
        assert set(pipeline["exporters"]) <= defined["exporters"] | defined["connectors"], pipeline_id
    assert set(config["service"].get("extensions", [])) <= defined["extensions"]
    for connector in defined["connectors"]:
        used_as = [(connector in p["exporters"], connector in p["receivers"]) for p in pipelines(config).values()]
        assert any(e for e, _ in used_as) and any(r for _, r in used_as), f"{connector} must feed and be fed"


@pytest.mark.parametrize("name", BASE_FILES)
def test_base_files_define_nothing_they_do_not_use(name: str) -> None:
    config = load(name)
    used = {c for p in pipelines(config).values() for key in ("receivers", "processors", "exporters") for c in p[key]}
    used |= set(config["service"].get("extensions", []))
    for section in SECTIONS:
        unused = set(config.get(section) or {}) - used
        assert not unused, f"{name}: unused {section} {unused}"


def test_the_real_collector_validates_it(config_names: tuple[str, ...], otelcol: Path) -> None:
    result = validate(otelcol, [CONFIG_DIR / name for name in config_names])
    assert result.returncode == 0, f"otelcol validate {' '.join(config_names)}:\n{result.stdout}{result.stderr}"


def test_the_binary_holds_exactly_the_components_the_files_use(otelcol: Path) -> None:
    import subprocess

    listing = yaml.safe_load(
        subprocess.run([str(otelcol), "components"], capture_output=True, text=True, check=True).stdout
    )
    built = {section: {entry["name"] for entry in listing.get(section) or []} for section in SECTIONS}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for names in CONFIG_SETS:
        config = load(*names)
        for section in SECTIONS:
            types = {_type(component_id) for component_id in config.get(section) or {}}
            used[section] |= {RENAMED.get(name, name) if section == "exporters" else name for name in types}
    for section in SECTIONS:
        assert used[section] <= built[section], f"{section} {used[section] - built[section]} are not in the binary"
        assert built[section] - used[section] <= EXTRA_COMPONENTS.get(section, set()), f"{section}: unused in the files"


def test_memory_limiter_comes_first_in_every_pipeline(config: dict[str, Any]) -> None:
    for pipeline_id, pipeline in pipelines(config).items():
        processors = pipeline.get("processors", [])
        assert processors and _type(processors[0]) == "memory_limiter", f"{pipeline_id}: {processors}"


def test_defaults_give_values_the_collector_accepts(config: dict[str, Any]) -> None:
    for component_id, settings in config["processors"].items():
        if _type(component_id) == "memory_limiter":
            # The Collector refuses a spike limit at or above the limit.
            assert 0 < settings["spike_limit_percentage"] < settings["limit_percentage"] <= 100
    for component_id, settings in config["exporters"].items():
        for tls in _find(settings, "tls"):
            if "insecure" in tls:
                assert isinstance(tls["insecure"], bool), f"{component_id}: tls.insecure is {tls['insecure']!r}"
            # A client certificate goes with its key: both set or both empty (the Collector refuses one alone).
            assert bool(tls.get("cert_file")) == bool(tls.get("key_file")), f"{component_id}: {tls}"
    for receiver in config["receivers"].values():
        for protocol in receiver["protocols"].values():
            # Since 0.104 the default is localhost, which nothing outside the container can reach.
            assert protocol["endpoint"].startswith("0.0.0.0:"), protocol
    for extension in config.get("extensions", {}).values():
        assert extension["endpoint"].startswith("0.0.0.0:")


def _find(tree: Any, key: str) -> Iterator[Any]:
    if isinstance(tree, dict):
        for name, value in tree.items():
            if name == key:
                yield value
            yield from _find(value, key)


# --- the tiers fit together ---------------------------------------------------------------------------


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _grpc_port(config: dict[str, Any]) -> int:
    return _port(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])


def test_agent_takes_the_bridges_otlp_and_feeds_tier_1() -> None:
    agent, tier1 = load("agent.yaml"), load("gateway-tier1-loadbalancer.yaml")
    protocols = agent["receivers"]["otlp"]["protocols"]
    assert _port(protocols["http"]["endpoint"]) == 4318  # the bridge's OTLP leg sends to :4318/v1/traces
    assert _port(protocols["grpc"]["endpoint"]) == 4317
    (chain, exporter), *others = routes(agent, "otlp")
    assert not others
    assert "resource" in chain
    assert {"key": "deployment.environment.name", "value": "production", "action": "insert"} in (
        agent["processors"]["resource"]["attributes"]
    )
    assert _port(agent["exporters"][exporter]["endpoint"]) == _grpc_port(tier1)


def test_tier_1_routes_every_span_by_trace_id_to_the_samplers() -> None:
    tier1, tier2 = load("gateway-tier1-loadbalancer.yaml"), load("gateway-tier2-sampler.yaml")
    destinations = {exporter for _, exporter in routes(tier1, "otlp")}
    assert destinations == {"loadbalancing"}
    balancer = tier1["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "traceID"
    assert list(balancer["resolver"]) in (["dns"], ["k8s"]), "exactly one resolver, DNS or Kubernetes"
    assert int(balancer["resolver"]["dns"]["port"]) == _grpc_port(tier2)
    assert not any(_type(p) == "tail_sampling" for p in tier1["processors"]), "tier 1 must hold no trace state"


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_sends_what_it_kept_to_the_backend_and_to_the_bridge(name: str) -> None:
    config = load(name)
    by_exporter = {exporter: chain for chain, exporter in routes(config, "otlp")}
    assert set(by_exporter) == {"otlp/backend", "otlphttp/bridge"}
    for chain in by_exporter.values():
        assert "tail_sampling" in chain
    assert "filter/already-in-sentry" in by_exporter["otlphttp/bridge"]
    assert "filter/already-in-sentry" not in by_exporter["otlp/backend"]
    bridge = config["exporters"]["otlphttp/bridge"]
    assert urlsplit(bridge["traces_endpoint"]).path == "/v1/traces"
    assert urlsplit(bridge["traces_endpoint"]).hostname == "127.0.0.1"
    assert bridge["encoding"] == "proto"


def test_tier_2_leaves_port_4318_to_the_bridge_sidecar() -> None:
    tier2 = load("gateway-tier2-sampler.yaml")
    assert set(tier2["receivers"]["otlp"]["protocols"]) == {"grpc"}
    assert tier2["exporters"]["otlphttp/bridge"]["traces_endpoint"] == BRIDGE_SERVE_DEFAULT


def test_single_node_samples_exactly_like_tier_2() -> None:
    tier2, single = load("gateway-tier2-sampler.yaml"), load("single-node.yaml")
    for component_id in ("tail_sampling", "filter/already-in-sentry"):
        assert single["processors"][component_id] == tier2["processors"][component_id], component_id
    assert pipelines(single)["traces/sentry"] == pipelines(tier2)["traces/sentry"]
    assert pipelines(single)["traces/backend"] == pipelines(tier2)["traces/backend"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_sentry_otlp_route_replaces_the_bridge_never_adds_to_it(name: str) -> None:
    config = load(name, OVERLAY)
    by_exporter = {exporter: chain for chain, exporter in routes(config, "otlp")}
    assert set(by_exporter) == {"otlp/backend", "otlphttp/sentry"}, "Sentry must get each trace once"
    assert "filter/already-in-sentry" in by_exporter["otlphttp/sentry"]
    sentry = config["exporters"]["otlphttp/sentry"]
    # Sentry's documented OTLP traces endpoint and auth header (docs.sentry.io/concepts/otlp/).
    assert re.fullmatch(r"https://[^/]+/api/[^/]+/integration/otlp/v1/traces", sentry["traces_endpoint"])
    assert re.fullmatch(r"sentry sentry_key=\S+", sentry["headers"]["x-sentry-auth"])


# --- what tail sampling keeps, judged by the real collector ----------------------------------------------


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("boom from /raise")
    start_response("500 Internal Server Error" if path == "/fail" else "200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def _sdk_trace(url: str, resource: dict[str, Any], *, error: bool, exception_event: bool) -> str:
    """One server span from a plain OpenTelemetry SDK service (not the bridge); its trace id in hex."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    provider = TracerProvider(resource=SdkResource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    with provider.get_tracer("tests.collector").start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
        if exception_event:
            span.add_event("exception", {"exception.type": "IllegalStateException", "exception.message": "declined"})
        if error:
            span.set_status(Status(StatusCode.ERROR))
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    return trace_id


def test_single_node_keeps_failed_traces_and_keeps_sentry_direct_services_from_the_converter(
    otelcol: Path, tmp_path: Path
) -> None:
    from werkzeug.test import Client

    import bridge
    from tests.collector_support import BACKEND_OVERLAY, GRPC, HTTP
    from tests.peers.otelcol import Collector, wait_until
    from tests.peers.otlp import OtlpReceiver

    overlay = tmp_path / "backend-overlay.yaml"
    overlay.write_text(BACKEND_OVERLAY)
    with OtlpReceiver() as backend, OtlpReceiver() as converter:
        collector = Collector(
            otelcol,
            [CONFIG_DIR / "single-node.yaml", overlay],
            tmp_path,
            name="single-node",
            listen=[GRPC, HTTP],
            sets={"processors::tail_sampling::decision_wait": "1s"},
            env={
                "BASELINE_SAMPLING_PERCENTAGE": "0",  # only the error policies keep a trace
                "BRIDGE_SERVE_TRACES_ENDPOINT": converter.endpoint,
                "TEST_BACKEND_TRACES_ENDPOINT": backend.endpoint,
            },
        )
        with collector:
            url = f"http://127.0.0.1:{collector.port(HTTP)}/v1/traces"
            instance = bridge.init(service_name="shop", otlp_endpoint=url, exporters=("otlp",))
            client = Client(bridge.BridgeMiddleware(_app))
            with pytest.raises(RuntimeError, match="boom from /raise"):
                client.get("/raise", buffered=True)
            assert client.get("/fail", buffered=True).status_code == 500
            assert client.get("/ok", buffered=True).status_code == 200
            assert instance.flush(10)
            instance.shutdown()
            # An exception recorded without an ERROR status (as some SDKs do) is kept by the "exceptions" policy.
            exception_only = _sdk_trace(url, {"service.name": "payments"}, error=False, exception_event=True)
            # Services reporting to Sentry themselves: kept for the backend, never fed to the converter.
            direct_bool = _sdk_trace(
                url, {"service.name": "d1", DIRECT_MARKER: True}, error=True, exception_event=False
            )
            direct_text = _sdk_trace(
                url, {"service.name": "d2", DIRECT_MARKER: "true"}, error=True, exception_event=False
            )
            decided = "otelcol_processor_tail_sampling_global_count_traces_sampled"
            wait_until(lambda: collector.metric(decided) >= 6, 30, lambda: collector.log_tail())
            backend_spans = backend.wait_for_spans(5, timeout=30)
            converter_spans = converter.wait_for_spans(3, timeout=30)
            assert collector.metric(decided, sampled="true") == 5

    def paths(spans: list[Any]) -> set[str]:
        return {
            str(s.attributes.get("url.path") or s.attributes.get("http.target")) for s in spans if s.kind == "SERVER"
        }

    backend_traces = {s.trace_id for s in backend_spans}
    assert {"/raise", "/fail"} <= paths(backend_spans) and "/ok" not in paths(backend_spans)
    assert {exception_only, direct_bool, direct_text} <= backend_traces
    converter_traces = {s.trace_id for s in converter_spans}
    assert {"/raise", "/fail"} <= paths(converter_spans) and "/ok" not in paths(converter_spans)
    assert exception_only in converter_traces
    assert not {direct_bool, direct_text} & converter_traces, "a sentry_direct service was fed to the converter"
