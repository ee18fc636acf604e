"""KrakenD's `telemetry/opencensus` section as attrs models, read with KrakenD's semantics."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from gatescope.settings import (
    COMMENT_KEY,
    ConfigError,
    Problems,
    boolean,
    describe,
    duration,
    effective,
    extension_keys,
    integer,
    join_path,
    one_of,
    parse_section,
    setting,
    string_list,
    unknown_key,
)

NAMESPACE = "telemetry/opencensus"
LEGACY_NAMESPACE = "github_com/devopsfaith/krakend-opencensus"
DEFAULT_REPORTING_PERIOD = 10.0
MAX_PERIOD_SECONDS = 9_223_372_036  # Go's time.Duration ceiling, in seconds
PATH_AGGREGATIONS = ("pattern", "lastparam", "off")


class ConfigUnreadable(ConfigError):
    """The file could not be read or is not JSON: nothing to validate yet."""


class ExporterCatalog(Protocol):
    """What config parsing needs to know about installed exporters."""

    def config_class(self, name: str) -> type | None: ...

    def load_error(self, name: str) -> str | None: ...

    def names(self) -> list[str]: ...


@attrs.frozen
class Layers:
    router: bool = True
    pipe: bool = True
    backend: bool = True


@attrs.frozen
class ServiceSettings:
    """The namespace's own keys; `exporters` and `enabled_layers` are parsed separately."""

    sample_rate: int = setting(integer(0, 100), default=0)
    reporting_period: int = setting(integer(-MAX_PERIOD_SECONDS, MAX_PERIOD_SECONDS), default=0)
    max_tag_sets: int = setting(
        integer(1, 1_000_000), default=2000, extension=True,
        doc="distinct tag sets kept per view; more fold into one overflow row",
    )
    queue_size: int = setting(
        integer(1, 10_000_000), default=20_000, extension=True,
        doc="finished spans buffered for export; beyond it new spans are dropped and counted",
    )
    batch_size: int = setting(
        integer(1, 100_000), default=1000, extension=True,
        doc="most spans handed to a trace exporter in one call",
    )
    export_timeout: float = setting(
        duration, default=10.0, extension=True,
        doc="longest one export call may take before it is abandoned and counted as failed",
    )
    export_process: bool = setting(
        boolean, default=False, extension=True,
        doc="run each trace exporter in a helper process, so span encoding leaves the server's GIL",
    )
    untraced_paths: tuple[str, ...] = setting(
        string_list, default=("/__health", "/healthz"), extension=True,
        doc="request paths the router layer neither traces nor measures",
    )


@attrs.frozen
class ExporterSection:
    name: str
    config: Any
    extensions: tuple[str, ...] = ()


@attrs.frozen
class BackendTelemetry:
    url_pattern: str
    path_aggregation: str = "pattern"


@attrs.frozen
class EndpointTelemetry:
    endpoint: str
    method: str = "GET"
    path_aggregation: str = "pattern"
    backends: tuple[BackendTelemetry, ...] = ()


@attrs.frozen
class TelemetryConfig:
    sample_rate: int = 0
    reporting_period: int = 0
    layers: Layers = Layers()
    exporters: tuple[ExporterSection, ...] = ()
    settings: ServiceSettings = ServiceSettings()
    endpoints: tuple[EndpointTelemetry, ...] = ()
    namespace: str = NAMESPACE
    extensions: tuple[str, ...] = ()
    service_name: str = "gatescope"  # the krakend.json root "name", when it has one

    def period(self, default: float = DEFAULT_REPORTING_PERIOD) -> float:
        """Seconds between pushes; KrakenD treats `<= 0` as the exporter's own default."""
        return float(self.reporting_period) if self.reporting_period > 0 else default

    def exporter(self, name: str) -> Any | None:
        for section in self.exporters:
            if section.name == name:
                return section.config
        return None

    def effective(self) -> dict[str, Any]:
        """JSON-ready effective config: defaults filled in, secrets redacted."""
        out = {
            "service_name": self.service_name,
            "namespace": self.namespace,
            "sample_rate": self.sample_rate,
            "reporting_period": self.reporting_period,
            "effective_reporting_period_seconds": self.period(),
            "enabled_layers": attrs.asdict(self.layers),
            "exporters": {s.name: effective(s.config) for s in self.exporters},
            "gatescope": {
                k: v for k, v in effective(self.settings).items()
                if k not in ("sample_rate", "reporting_period")
            },
            "extension_keys": list(self.extensions)
            + [f"exporters.{s.name}.{k}" for s in self.exporters for k in s.extensions],
        }
        if self.endpoints:
            out["endpoints"] = [attrs.asdict(e) for e in self.endpoints]
        return out


def read_document(path: str | os.PathLike[str]) -> Any:
    """Read a krakend.json; unreadable files and JSON syntax errors raise ConfigUnreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigUnreadable([f"{os.fspath(path)}: cannot read: {exc}"]) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigUnreadable([f"{os.fspath(path)}: not valid JSON at {where}: {exc.msg}"]) from exc
    except RecursionError as exc:
        raise ConfigUnreadable([f"{os.fspath(path)}: JSON nested too deeply"]) from exc


def load_config(source: Any, catalog: ExporterCatalog) -> TelemetryConfig:
    """Parse a krakend.json (path or already-loaded dict) into a TelemetryConfig."""
    is_path = isinstance(source, str | os.PathLike)
    document = read_document(source) if is_path else source
    problems = Problems()
    config = _parse_document(document, catalog, problems)
    problems.raise_if_any()
    assert config is not None
    return config


def _parse_document(
    document: Any, catalog: ExporterCatalog, problems: Problems
) -> TelemetryConfig | None:
    if not isinstance(document, Mapping):
        problems.add("$", f"expected a JSON object, got {describe(document)}")
        return None
    extra = document.get("extra_config")
    if not isinstance(extra, Mapping):
        where = "extra_config" if "extra_config" in document else "$"
        problems.add(where, f'expected an object holding "{NAMESPACE}"')
        return None
    present = [ns for ns in (NAMESPACE, LEGACY_NAMESPACE) if ns in extra]
    if not present:
        problems.add("extra_config", f'no "{NAMESPACE}" section (nor the legacy "{LEGACY_NAMESPACE}")')
        return None
    if len(present) == 2:
        problems.add(
            "extra_config",
            f'both "{NAMESPACE}" and the legacy "{LEGACY_NAMESPACE}" are set; keep only one',
        )
        return None
    namespace = present[0]
    config = parse_service_section(extra[namespace], f"extra_config.{namespace}", catalog, problems)
    endpoints = _parse_endpoints(document.get("endpoints"), namespace, problems)
    if config is None:
        return None
    name = document.get("name")
    return attrs.evolve(
        config, endpoints=endpoints, namespace=namespace,
        service_name=name if isinstance(name, str) and name else "gatescope",
    )


def parse_service_section(
    data: Any, path: str, catalog: ExporterCatalog, problems: Problems
) -> TelemetryConfig | None:
    """Parse the namespace object itself (what KrakenD's `parseCfg` decodes)."""
    if not isinstance(data, Mapping):
        problems.add(path, f"expected an object, got {describe(data)}")
        return None
    before = len(problems.items)
    own = {k: v for k, v in data.items() if k not in ("exporters", "enabled_layers")}
    settings = parse_section(
        ServiceSettings, own, path, problems, also_known=("exporters", "enabled_layers")
    )
    layers = _parse_layers(data.get("enabled_layers"), join_path(path, "enabled_layers"), problems)
    exporters = _parse_exporters(data, join_path(path, "exporters"), catalog, problems)
    if len(problems.items) > before or settings is None:
        return None
    return TelemetryConfig(
        sample_rate=settings.sample_rate,
        reporting_period=settings.reporting_period,
        layers=layers,
        exporters=exporters,
        settings=settings,
        extensions=tuple(extension_keys(settings, own)),
    )


def _parse_layers(data: Any, path: str, problems: Problems) -> Layers:
    if data is None:  # absent (or JSON null, which Go decodes to a nil pointer): all on
        return Layers()
    if not isinstance(data, Mapping):
        problems.add(path, f"expected an object, got {describe(data)}")
        return Layers()
    values = {}
    for key, raw in data.items():
        if COMMENT_KEY.match(key):
            continue
        if key not in ("router", "pipe", "backend"):
            unknown_key(problems, path, key, ("router", "pipe", "backend"))
            continue
        try:
            values[key] = boolean(raw)
        except ValueError as exc:
            problems.add(join_path(path, key), str(exc))
    # KrakenD: once the section is present, every layer it does not name is off.
    return Layers(**{k: values.get(k, False) for k in ("router", "pipe", "backend")})


def _parse_exporters(
    data: Mapping[str, Any], path: str, catalog: ExporterCatalog, problems: Problems
) -> tuple[ExporterSection, ...]:
    if "exporters" not in data:
        problems.add(path, "is required: configure at least one exporter")
        return ()
    raw = data["exporters"]
    if not isinstance(raw, Mapping):
        problems.add(path, f"expected an object, got {describe(raw)}")
        return ()
    names = [k for k in raw if not COMMENT_KEY.match(k)]
    if not names:
        problems.add(path, "configure at least one exporter")
    sections: list[ExporterSection] = []
    for name in names:
        section_path = join_path(path, name)
        config_class = catalog.config_class(name)
        if config_class is None:
            _unknown_exporter(name, section_path, catalog, problems)
            continue
        parsed = parse_section(config_class, raw[name], section_path, problems)
        if parsed is not None:
            present = [k for k in raw[name] if isinstance(k, str)]
            sections.append(ExporterSection(name, parsed, tuple(extension_keys(parsed, present))))
    return tuple(sections)


def _unknown_exporter(name: str, path: str, catalog: ExporterCatalog, problems: Problems) -> None:
    error = catalog.load_error(name)
    if error is not None:
        problems.add(path, f"the exporter plugin is installed but failed to load: {error}")
        return
    installed = ", ".join(sorted(catalog.names())) or "none"
    problems.add(
        path,
        f'unknown exporter "{name}" (installed: {installed}); '
        f"if it is a plugin, install it with: pip install gatescope-{name}",
    )


def _parse_endpoints(data: Any, namespace: str, problems: Problems) -> tuple[EndpointTelemetry, ...]:
    """Only the telemetry part of endpoints/backends; the rest belongs to the gateway."""
    if not isinstance(data, list):
        return ()
    out = []
    for index, endpoint in enumerate(data):
        if not isinstance(endpoint, Mapping) or not isinstance(endpoint.get("endpoint"), str):
            continue
        path = f"endpoints[{index}]"
        backends = []
        raw_backends = endpoint.get("backend")
        for b_index, backend in enumerate(raw_backends if isinstance(raw_backends, list) else []):
            if not isinstance(backend, Mapping):
                continue
            aggregation = _path_aggregation(backend, namespace, f"{path}.backend[{b_index}]", problems)
            pattern = backend.get("url_pattern")
            backends.append(
                BackendTelemetry(pattern if isinstance(pattern, str) else "", aggregation)
            )
        method = endpoint.get("method")
        out.append(
            EndpointTelemetry(
                endpoint=endpoint["endpoint"],
                method=method.upper() if isinstance(method, str) else "GET",
                path_aggregation=_path_aggregation(endpoint, namespace, path, problems),
                backends=tuple(backends),
            )
        )
    return tuple(out)


def _path_aggregation(item: Mapping[str, Any], namespace: str, path: str, problems: Problems) -> str:
    extra = item.get("extra_config")
    if not isinstance(extra, Mapping) or namespace not in extra:
        return "pattern"
    section_path = f"{path}.extra_config.{namespace}"
    section = extra[namespace]
    if not isinstance(section, Mapping):
        problems.add(section_path, f"expected an object, got {describe(section)}")
        return "pattern"
    for key in section:
        if not COMMENT_KEY.match(key) and key != "path_aggregation":
            unknown_key(problems, section_path, key, ("path_aggregation",))
    if "path_aggregation" not in section:
        return "pattern"
    try:
        value: str = one_of(*PATH_AGGREGATIONS)(section["path_aggregation"])
        return value
    except ValueError as exc:
        problems.add(f"{section_path}.path_aggregation", str(exc))
        return "pattern"


__all__ = [
    "DEFAULT_REPORTING_PERIOD",
    "LEGACY_NAMESPACE",
    "NAMESPACE",
    "BackendTelemetry",
    "ConfigError",
    "ConfigUnreadable",
    "EndpointTelemetry",
    "ExporterCatalog",
    "ExporterSection",
    "Layers",
    "ServiceSettings",
    "TelemetryConfig",
    "load_config",
    "read_document",
]
