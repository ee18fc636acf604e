"""`exporters.datadog`: defaults, every key, bad values with exact JSON paths, every schema version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError, describe
from gatescope_datadog import DatadogConfig

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"
PATH = f"extra_config.{NAMESPACE}.exporters.datadog"
REGISTRY = default_registry()[1]
FULL = {"namespace": "krakend", "service": "gateway", "trace_address": "agent:8126",
        "stats_address": "agent:8125", "tags": ["env:prod"], "global_tags": {"env": "prod"},
        "disable_count_per_buckets": True}


def load(section: Any) -> DatadogConfig:
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"datadog": section}}}}
    config: DatadogConfig = load_config(document, REGISTRY).exporter("datadog")
    return config


def problems(section: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(section)
    return info.value.problems


def test_defaults_when_keys_are_missing() -> None:
    config = load({})
    assert (config.namespace, config.service_name, config.tags, dict(config.global_tags)) == (
        "", "opencensus-app", (), {})
    assert config.agent == ("localhost", 8126) and config.dogstatsd == ("localhost", 8125)
    assert config.disable_count_per_buckets is False


def test_empty_strings_mean_defaults_as_in_the_go_exporter() -> None:
    config = load({**FULL, "service": "", "trace_address": "", "stats_address": ""})
    assert config.service_name == "opencensus-app"
    assert config.agent == ("localhost", 8126) and config.dogstatsd == ("localhost", 8125)


def test_every_key() -> None:
    config = load({**FULL, "global_tags": {"env": "prod", "n": 3, "ok": True, "l": [1], "none": None}})
    assert (config.namespace, config.service_name) == ("krakend", "gateway")
    assert config.agent == ("agent", 8126) and config.dogstatsd == ("agent", 8125)
    assert config.tags == ("env:prod",) and config.disable_count_per_buckets is True
    assert dict(config.global_tags) == {"env": "prod", "n": 3, "ok": True, "l": [1], "none": None}


@pytest.mark.parametrize(("value", "expected"), [
    ("unix:///var/run/datadog/dsd.socket", "/var/run/datadog/dsd.socket"),
    ("unixgram:///tmp/d.sock", "/tmp/d.sock"),
    ("10.0.0.1", ("10.0.0.1", 8125)),
    ("[::1]:9125", ("::1", 9125)),
])
def test_stats_addresses(value: str, expected: Any) -> None:
    assert load({"stats_address": value}).dogstatsd == expected


def test_trace_address_without_port_uses_the_agent_port() -> None:
    assert load({"trace_address": "dd-agent"}).agent == ("dd-agent", 8126)


@pytest.mark.parametrize(("section", "expected"), [
    ({"trace_address": "http://agent:8126"},
     f'{PATH}.trace_address: expected "host[:port]" of the trace agent, got "http://agent:8126"'),
    ({"trace_address": "agent:99999"},
     f'{PATH}.trace_address: expected "host[:port]" of the trace agent, got "agent:99999"'),
    ({"trace_address": "agent:\u00b2"},  # str.isdigit() says yes, int() raised
     f'{PATH}.trace_address: expected "host[:port]" of the trace agent, got "agent:\u00b2"'),
    ({"trace_address": "agent:" + "9" * 5000},  # past int()'s digit limit
     f'{PATH}.trace_address: expected "host[:port]" of the trace agent, '
     f'got {describe("agent:" + "9" * 5000)}'),
    ({"stats_address": "agent:\u0668\u0660"},  # Arabic-Indic 80: no socket takes it as a port
     f'{PATH}.stats_address: expected "host[:port]" or "unix:///path/to/dsd.socket", '
     f'got "agent:\u0668\u0660"'),
    ({"stats_address": "udp://x:1"},
     f'{PATH}.stats_address: expected "host[:port]" or "unix:///path/to/dsd.socket", got "udp://x:1"'),
    ({"stats_address": "unix://"},
     f'{PATH}.stats_address: expected "host[:port]" or "unix:///path/to/dsd.socket", got "unix://"'),
    ({"stats_address": 8125},
     f'{PATH}.stats_address: expected "host[:port]" or "unix:///path/to/dsd.socket", got 8125'),
    ({"tags": "env:prod"}, f'{PATH}.tags: expected a list of strings, got "env:prod"'),
    ({"tags": ["a", 1]}, f"{PATH}.tags: expected a list of strings, item 1 is 1"),
    ({"global_tags": ["env"]}, f"{PATH}.global_tags: expected an object, got a list"),
    ({"namespace": 1}, f"{PATH}.namespace: expected a string, got 1"),
    ({"service": None}, f"{PATH}.service: expected a string, got null"),
    ({"disable_count_per_buckets": "no"}, f'{PATH}.disable_count_per_buckets: expected true or false, got "no"'),
    ({"stat_address": "x"}, f'{PATH}.stat_address: unknown key (did you mean "stats_address"?)'),
])
def test_bad_values_name_their_json_path(section: dict[str, Any], expected: str) -> None:
    assert expected in problems(section)


def _schema(version: Path) -> dict[str, Any]:
    schema = json.loads((version / "telemetry" / "opencensus.json").read_text())
    return _without_ids(schema["properties"]["exporters"]["properties"]["datadog"])


def _without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k not in ("$id", "$schema")}
    return node


VERSIONS = sorted(p for p in REFERENCE.iterdir() if (p / "telemetry" / "opencensus.json").exists()) \
    if REFERENCE.exists() else []
SCHEMA_VALID = [
    FULL,
    {**FULL, "namespace": "", "service": "", "tags": [], "global_tags": {},
     "disable_count_per_buckets": False, "@comment": "all keys, as the schema requires"},
    {**FULL, "trace_address": "localhost:8126", "stats_address": "unix:///var/run/datadog/dsd.socket",
     "global_tags": {"env": "prod", "weight": 1.5, "flag": False, "nested": {"a": [1, None]}}},
]


def test_reference_schemas_present() -> None:
    assert len(VERSIONS) >= 13, f"KrakenD schemas expected under {REFERENCE}"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("section", SCHEMA_VALID)
def test_schema_valid_sections_are_accepted(version: Path, section: dict[str, Any]) -> None:
    jsonschema.validate(section, _schema(version))
    load(section)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda p: p.name)
def test_schema_examples_and_defaults_are_accepted(version: Path) -> None:
    properties = _schema(version)["properties"]
    section = {key: spec["examples"][0] if spec.get("examples") else spec.get("default")
               for key, spec in properties.items()}
    section = {k: v for k, v in section.items() if v is not None}
    config = load(section)
    assert config.service == "gateway" and config.agent == ("localhost", 8126)
    assert dict(config.global_tags) == {"env": "prod"}


def test_partial_sections_are_accepted_though_the_schema_requires_every_key() -> None:
    config = load({"service": "gw"})
    assert config.service_name == "gw" and config.agent == ("localhost", 8126)
