"""`exporters.prometheus`: defaults, every key, bad values with JSON paths, every schema version."""

from __future__ import annotations

import copy
import json

import pytest
from gatescope import ConfigError, load_config
from gatescope.plugins import default_registry
from gatescope.settings import effective, extension_keys
from gatescope.stats import TagOptions
from gatescope.testing import krakend_config
from gatescope_prometheus import PrometheusConfig
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
from prometheus_testlib import REFERENCE

REGISTRY = default_registry()[1]
PATH = "extra_config.telemetry/opencensus.exporters.prometheus"


def parse(section: object) -> PrometheusConfig:
    config = load_config(krakend_config({"prometheus": section}), REGISTRY)
    (exporter,) = config.exporters
    assert isinstance(exporter.config, PrometheusConfig)
    return exporter.config


def problems(section: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_config(krakend_config({"prometheus": section}), REGISTRY)
    return caught.value.problems


def test_defaults_are_krakends_go_zero_values() -> None:
    config = parse({"port": 9091})
    assert effective(config) == {
        "port": 9091, "namespace": "", "tag_host": False, "tag_path": False,
        "tag_method": False, "tag_statuscode": False, "listen_ip": "0.0.0.0",
        "read_timeout": 5.0, "max_connections": 16,
    }
    assert config.stats_tag_options() == TagOptions()


def test_every_key() -> None:
    config = parse({"port": 0, "namespace": "krakend", "tag_host": True, "tag_path": True,
                    "tag_method": True, "tag_statuscode": True, "listen_ip": "::1",
                    "read_timeout": "250ms", "max_connections": 4, "@comment": "ignored"})
    assert (config.port, config.namespace, config.listen_ip) == (0, "krakend", "::1")
    assert (config.read_timeout, config.max_connections) == (0.25, 4)
    assert config.stats_tag_options() == TagOptions(host=True, path=True, method=True,
                                                    status=True)


@pytest.mark.parametrize("key", ["tag_host", "tag_path", "tag_method", "tag_statuscode"])
def test_each_tag_switch_maps_to_its_tag_option(key: str) -> None:
    options = parse({"port": 1, key: True}).stats_tag_options()
    field = {"tag_host": "host", "tag_path": "path", "tag_method": "method",
             "tag_statuscode": "status"}[key]
    assert options == TagOptions(**{field: True})


def test_extension_keys_are_marked() -> None:
    config = parse({"port": 1, "listen_ip": "127.0.0.1", "read_timeout": "1s"})
    present = ["port", "listen_ip", "read_timeout", "max_connections", "namespace"]
    assert extension_keys(config, present) == ["listen_ip", "max_connections", "read_timeout"]


@pytest.mark.parametrize(("section", "expected"), [
    ({}, [f"{PATH}.port: is required"]),
    ({"port": "9091"}, [f'{PATH}.port: expected an integer 0..65535, got "9091"']),
    ({"port": 65536}, [f"{PATH}.port: expected an integer 0..65535, got 65536"]),
    ({"port": -1}, [f"{PATH}.port: expected an integer 0..65535, got -1"]),
    ({"port": 1.5}, [f"{PATH}.port: expected an integer 0..65535, got 1.5"]),
    ({"port": 1, "namespace": 3}, [f"{PATH}.namespace: expected a string, got 3"]),
    ({"port": 1, "tag_method": "yes"}, [f'{PATH}.tag_method: expected true or false, got "yes"']),
    ({"port": 1, "tag_statuscode": None}, [f"{PATH}.tag_statuscode: expected true or false, got null"]),
    ({"port": 1, "listen_ip": "localhost"},
     [f'{PATH}.listen_ip: expected an IP address such as "127.0.0.1" or "::1", got "localhost"']),
    ({"port": 1, "read_timeout": 5},
     [f'{PATH}.read_timeout: expected a duration like "2s" or "500ms" (units ns, us, µs, ms, s, '
      f"m, h), got 5"]),
    ({"port": 1, "read_timeout": "0s"}, [f"{PATH}.read_timeout: expected a duration greater than 0"]),
    ({"port": 1, "max_connections": 0}, [f"{PATH}.max_connections: expected an integer 1..1024, got 0"]),
    ({"port": 1, "tag_status": True}, [f'{PATH}.tag_status: unknown key (did you mean "tag_statuscode"?)']),
    ("9091", [f'{PATH}: expected an object, got "9091"']),
])
def test_bad_values_name_their_json_path(section: object, expected: list[str]) -> None:
    assert list(problems(section)) == expected


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"port": "x", "tag_host": 1, "listen_ip": "nope"})
    assert [p.split(":")[0] for p in found] == [f"{PATH}.port", f"{PATH}.tag_host",
                                                 f"{PATH}.listen_ip"]


def _prometheus_schemas() -> dict[str, dict]:
    distinct: dict[str, tuple[list[str], dict]] = {}
    for version in sorted((REFERENCE / "krakend-schema").glob("v*")):
        schema = json.loads((version / "telemetry" / "opencensus.json").read_text())
        section = copy.deepcopy(schema["properties"]["exporters"]["properties"]["prometheus"])
        section.pop("$id", None)
        for prop in section["properties"].values():
            prop.pop("$id", None)
        # KrakenD's Go code listens on the port: outside 0..65535 it fails at start-up.
        section["properties"]["port"].update({"minimum": 0, "maximum": 65535})
        distinct.setdefault(json.dumps(section, sort_keys=True), ([], section))[0].append(version.name)
    return {"+".join(names): section for names, section in distinct.values()}


SCHEMAS = _prometheus_schemas()


def test_schema_versions_are_found() -> None:
    assert len(SCHEMAS) >= 1 and sum(k.count("v2.") for k in SCHEMAS) == 13


@pytest.mark.parametrize("versions", sorted(SCHEMAS))
def test_schema_valid_sections_are_accepted(versions: str) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(from_schema(SCHEMAS[versions]))
    def check(section: dict) -> None:
        config = parse(section)
        assert config.port == section["port"]
        assert config.tag_method is section.get("tag_method", False)

    check()
