"""Every document KrakenD's official schema accepts (all versions) is accepted by gatescope.

hypothesis-jsonschema generates `telemetry/opencensus` sections from each schema version in
../shared/reference/krakend-schema, one installed exporter at a time. Where the schema is looser
than KrakenD's own Go code (which then refuses the document at start-up or fails every export), the
OVERLAY below narrows generation, and `test_overlay_cases_are_rejected_with_paths` proves each of
those documents gets a clear, path-naming error instead of silent acceptance.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "krakend-schema"
ALL_EXPORTERS = ("datadog", "influxdb", "jaeger", "logger", "ocagent", "prometheus",
                 "stackdriver", "xray", "zipkin")
REGISTRY = default_registry()[1]
INSTALLED = [name for name in ALL_EXPORTERS if name in REGISTRY.exporters]

URL = {"type": "string", "pattern": r"^https?://[a-z0-9.-]+(:[1-9][0-9]{0,3})?(/[a-z0-9/_-]*)?\Z"}
HOST_PORT = {"type": "string", "pattern": r"^[a-z0-9.-]+:[1-9][0-9]{0,3}\Z"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

# Path (inside a section) -> narrowed sub-schema, each with the reason KrakenD itself fails.
OVERLAY: dict[str, dict[str, Any]] = {
    # Go decodes into *EnabledLayers: a number or string is a json.Unmarshal error.
    "enabled_layers": {"type": ["object", "null"]},
    # Go's time.Duration(seconds) overflows beyond this.
    "reporting_period": {"type": "integer", "minimum": -9_223_372_036, "maximum": 9_223_372_036},
    "exporters.prometheus.port": {"type": "integer", "minimum": 0, "maximum": 65535},
    "exporters.datadog.tags": {"type": "array", "items": {"type": "string"}},  # Go: []string
    # Go: map[string]string; gRPC refuses metadata keys outside [a-z0-9-_.] when sending.
    "exporters.ocagent.headers": {**STRING_MAP, "propertyNames": {"pattern": r"^[a-z0-9_.-]+\Z"}},
    "exporters.stackdriver.default_labels": STRING_MAP,  # Go: map[string]string
    # Addresses KrakenD accepts and then fails every export with; gatescope rejects at start.
    "exporters.zipkin.collector_url": URL,
    "exporters.jaeger.endpoint": URL,
    "exporters.jaeger.agent_endpoint": HOST_PORT,
    "exporters.influxdb.address": URL,
    "exporters.ocagent.address": HOST_PORT,
    "exporters.datadog.trace_address": HOST_PORT,
    "exporters.datadog.stats_address": HOST_PORT,
    "exporters.jaeger.buffer_max_count": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
    # Go's time.ParseDuration refuses values beyond ~292 years.
    "exporters.influxdb.timeout": {"type": "string", "pattern": r"^[0-9]{1,6}(ns|ms|us|µs|s|m|h)\Z"},
    "exporters.ocagent.reconnection": {"type": "string",
                                       "pattern": r"^[0-9]{1,6}(ns|ms|us|µs|s|m|h)\Z"},
}


def _load(version: Path) -> dict[str, Any]:
    schema = json.loads((version / "telemetry" / "opencensus.json").read_text())
    timeunit = json.loads((version / "timeunits.json").read_text())["$defs"]["timeunit"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("$ref", "").endswith("timeunits.json#/$defs/timeunit"):
                merged = {**timeunit, **{k: v for k, v in node.items() if k != "$ref"}}
                return resolve(merged)
            return {k: resolve(v) for k, v in node.items()
                    if k not in ("$id", "$schema", "title", "description", "examples")}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def _versions() -> dict[str, dict[str, Any]]:
    """Distinct schema contents, labelled by the versions that share them."""
    distinct: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for version in sorted(REFERENCE.iterdir()):
        if not (version / "telemetry" / "opencensus.json").exists():
            continue
        schema = _load(version)
        key = json.dumps(schema, sort_keys=True)
        distinct.setdefault(key, ([], schema))[0].append(version.name)
    return {"+".join(names): schema for names, schema in distinct.values()}


def _apply_overlay(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for path, narrowed in OVERLAY.items():
        node = schema
        parts = path.split(".")
        for part in parts[:-1]:
            node = node["properties"][part]
        if parts[-1] in node.get("properties", {}):
            node["properties"][parts[-1]] = {**node["properties"][parts[-1]], **narrowed}
    return schema


def _one_exporter(schema: dict[str, Any], name: str) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    exporters = schema["properties"]["exporters"]
    exporters["properties"] = {name: exporters["properties"][name]}
    exporters["required"] = [name]
    exporters["patternProperties"] = {}
    exporters["additionalProperties"] = False
    return schema


VERSIONS = _versions()


def _cases() -> list[tuple[str, str]]:
    """One case per distinct (exporter sub-schema, service keys) across the versions."""
    seen: dict[str, tuple[list[str], str]] = {}
    for label, schema in VERSIONS.items():
        for name in INSTALLED:
            if name not in schema["properties"]["exporters"]["properties"]:
                continue
            key = name + json.dumps(_one_exporter(schema, name), sort_keys=True)
            seen.setdefault(key, ([], name))[0].append(label)
    return [(" | ".join(labels), name) for labels, name in seen.values()]


CASES = _cases()


def test_reference_schemas_present():
    assert len(VERSIONS) >= 3, f"expected the KrakenD schema versions under {REFERENCE}"


def test_installed_exporters_cover_the_schema():
    missing = [name for name in ALL_EXPORTERS if name not in REGISTRY.exporters]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"exporter plugins not installed: {missing}")
    assert "logger" in INSTALLED


@pytest.mark.parametrize(("label", "exporter"), CASES)
def test_schema_valid_documents_are_accepted(label: str, exporter: str) -> None:
    schema = _one_exporter(_apply_overlay(VERSIONS[label.split(" | ")[0]]), exporter)

    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(from_schema(schema))
    def accepted(section: dict[str, Any]) -> None:
        document = {"version": 3, "extra_config": {NAMESPACE: section}}
        try:
            load_config(document, REGISTRY)
        except ConfigError as exc:
            raise AssertionError(f"schema {label} accepts but gatescope rejected:\n{exc}\n"
                                 f"{json.dumps(section)[:2000]}") from exc

    accepted()


# Documents the raw schema accepts but KrakenD's Go code refuses: each gets a path-naming error.
OVERLAY_CASES = [
    ({"enabled_layers": 7}, "enabled_layers: expected an object"),
    ({"reporting_period": 10**12}, "reporting_period: expected an integer"),
    ({"exporters": {"prometheus": {"port": 70000}}}, "exporters.prometheus.port: expected an integer 0..65535"),
    ({"exporters": {"datadog": {"tags": [1]}}}, "exporters.datadog.tags"),
    ({"exporters": {"ocagent": {"address": "h:1", "headers": {"a": 1}}}}, "exporters.ocagent.headers"),
    ({"exporters": {"stackdriver": {"project_id": "p", "default_labels": {"a": []}}}},
     "exporters.stackdriver.default_labels"),
    ({"exporters": {"zipkin": {"collector_url": "nowhere", "service_name": "s"}}},
     "exporters.zipkin.collector_url"),
    ({"exporters": {"influxdb": {"address": "http://x:8086", "db": "d", "timeout": "9999999999999h"}}},
     "exporters.influxdb.timeout"),
]


@pytest.mark.parametrize(("section", "expected"), OVERLAY_CASES)
def test_overlay_cases_are_rejected_with_paths(section: dict[str, Any], expected: str) -> None:
    exporters = section.get("exporters", {"logger": {}})
    if any(name not in REGISTRY.exporters for name in exporters):
        pytest.skip(f"exporter plugin not installed: {sorted(exporters)}")
    document = {"extra_config": {NAMESPACE: {"exporters": exporters,
                                             **{k: v for k, v in section.items() if k != "exporters"}}}}
    with pytest.raises(ConfigError) as info:
        load_config(document, REGISTRY)
    assert any(f"extra_config.{NAMESPACE}.{expected}" in p for p in info.value.problems), info.value


@given(st.dictionaries(st.text(max_size=5), st.none() | st.integers() | st.text(max_size=5),
                       max_size=4))
@settings(max_examples=50, deadline=None, database=None)
def test_random_logger_sections_never_raise_other_errors(section: dict[str, Any]) -> None:
    document = {"extra_config": {NAMESPACE: {"exporters": {"logger": section}}}}
    try:
        load_config(document, REGISTRY)
    except ConfigError as exc:
        assert all(p.startswith(f"extra_config.{NAMESPACE}.exporters.logger") for p in exc.problems)
