"""`exporters.influxdb`: defaults, every key, bad values with exact JSON paths, every schema version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gatescope.config import LEGACY_NAMESPACE, NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError
from gatescope_influxdb import InfluxDBConfig

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"
PATH = f"extra_config.{NAMESPACE}.exporters.influxdb"
REGISTRY = default_registry()[1]


def load(section: dict[str, Any], namespace: str = NAMESPACE) -> InfluxDBConfig:
    document = {"version": 3, "extra_config": {namespace: {"exporters": {"influxdb": section}}}}
    config: InfluxDBConfig = load_config(document, REGISTRY).exporter("influxdb")
    return config


def problems(section: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(section)
    return info.value.problems


def test_defaults() -> None:
    config = load({"address": "http://127.0.0.1:8086", "db": "krakend"})
    assert (config.username, config.password, config.timeout, config.service_name) == ("", "", None, "")
    assert (config.ping, config.buffer_size, config.buffer_points) == (False, 0, 100_000)
    assert config.request_timeout(10.0) == 10.0


def test_every_key() -> None:
    config = load({"address": "https://influx.example:8086/prefix", "db": "metrics",
                   "username": "krakend", "password": "kr4k3nd", "timeout": "2s",
                   "service_name": "gw-1", "ping": True, "buffer_size": 500,
                   "@comment": "comment keys are ignored"})
    assert config == InfluxDBConfig(address="https://influx.example:8086/prefix", db="metrics",
                                    username="krakend", password="kr4k3nd", timeout=2.0,
                                    service_name="gw-1", ping=True, buffer_size=500)
    assert config.request_timeout(10.0) == 2.0 and config.buffer_points == 500
    assert "kr4k3nd" not in repr(config)
    assert load({"address": "http://h:1", "db": "d", "timeout": "0s"}).request_timeout(7.0) == 7.0


def test_legacy_namespace() -> None:
    assert load({"address": "http://h:1", "db": "d"}, LEGACY_NAMESPACE).db == "d"


@pytest.mark.parametrize(("section", "expected"), [
    ({"db": "d"}, f"{PATH}.address: is required"),
    ({"address": "http://h:1"}, f"{PATH}.db: is required"),
    ({"address": "influx:8086", "db": "d"},
     f'{PATH}.address: expected a URL starting with http:// or https://, got "influx:8086"'),
    ({"address": 8086, "db": "d"}, f"{PATH}.address: expected a URL starting with http:// or https://, got 8086"),
    ({"address": "http://h:1", "db": 5}, f"{PATH}.db: expected a string, got 5"),
    ({"address": "http://h:1", "db": "d", "timeout": "2 s"},
     f'{PATH}.timeout: expected a duration like "2s" or "500ms" (units ns, us, µs, ms, s, m, h), got "2 s"'),
    ({"address": "http://h:1", "db": "d", "timeout": 2},
     f'{PATH}.timeout: expected a duration like "2s" or "500ms" (units ns, us, µs, ms, s, m, h), got 2'),
    ({"address": "http://h:1", "db": "d", "ping": "yes"}, f'{PATH}.ping: expected true or false, got "yes"'),
    ({"address": "http://h:1", "db": "d", "buffer_size": -1},
     f"{PATH}.buffer_size: expected an integer 0..100000000, got -1"),
    ({"address": "http://h:1", "db": "d", "service_name": ["a"]},
     f"{PATH}.service_name: expected a string, got a list"),
    ({"address": "http://h:1", "db": "d", "password": 1234},
     f"{PATH}.password: expected a string, got a value of the wrong type"),
    ({"address": "http://h:1", "db": "d", "adress": "x"}, f'{PATH}.adress: unknown key (did you mean "address"?)'),
])
def test_bad_values_name_their_json_path(section: dict[str, Any], expected: str) -> None:
    assert expected in problems(section)


def test_not_an_object() -> None:
    assert problems([]) == (f"{PATH}: expected an object, got a list",)


def _schema(version: Path) -> dict[str, Any]:
    schema = json.loads((version / "telemetry" / "opencensus.json").read_text())
    section: dict[str, Any] = schema["properties"]["exporters"]["properties"]["influxdb"]
    timeunit = json.loads((version / "timeunits.json").read_text())["$defs"]["timeunit"]
    section["properties"]["timeout"] = {"type": "string", "pattern": timeunit["pattern"]}
    return _without_ids(section)


def _without_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k not in ("$id", "$schema")}
    return node


VERSIONS = sorted(p for p in REFERENCE.iterdir() if (p / "telemetry" / "opencensus.json").exists()) \
    if REFERENCE.exists() else []
SCHEMA_VALID = [
    {"address": "http://192.168.99.100:8086", "db": "krakend"},
    {"address": "http://192.168.99.100:8086", "db": "krakend", "username": "krakend",
     "password": "kr4k3nd", "timeout": "2s"},
    {"address": "https://influx:8086/", "db": "", "timeout": "1500ms", "_note": "x", "#c": 1},
    {"address": "http://[::1]:8086", "db": "k", "username": "", "password": "", "timeout": "1h"},
]


def test_reference_schemas_present() -> None:
    assert len(VERSIONS) >= 13, f"KrakenD schemas expected under {REFERENCE}"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("section", SCHEMA_VALID)
def test_schema_valid_sections_are_accepted(version: Path, section: dict[str, Any]) -> None:
    jsonschema.validate(section, _schema(version))  # the document really is schema-valid
    load(section)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda p: p.name)
def test_schema_examples_are_accepted(version: Path) -> None:
    properties = _schema(version)["properties"]
    raw = json.loads((version / "telemetry" / "opencensus.json").read_text())
    examples = {key: spec["examples"][0] for key, spec in
                raw["properties"]["exporters"]["properties"]["influxdb"]["properties"].items()
                if spec.get("examples")}
    assert set(examples) == set(properties)
    config = load(examples)
    assert (config.address, config.db, config.timeout) == (examples["address"], examples["db"], 2.0)


def test_keys_krakends_go_code_reads_are_accepted_without_extension_marks() -> None:
    document = {"extra_config": {NAMESPACE: {"exporters": {"influxdb": {
        "address": "http://h:1", "db": "d", "service_name": "s", "ping": False, "buffer_size": 0}}}}}
    config = load_config(document, REGISTRY)
    assert config.effective()["extension_keys"] == []
    effective = config.effective()["exporters"]["influxdb"]
    assert effective["password"] != "***"  # nothing to hide when empty
    secret = load_config({"extra_config": {NAMESPACE: {"exporters": {"influxdb": {
        "address": "http://h:1", "db": "d", "username": "u", "password": "p4ss"}}}}}, REGISTRY)
    assert secret.effective()["exporters"]["influxdb"]["password"] == "***"
