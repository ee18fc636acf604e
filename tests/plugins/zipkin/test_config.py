"""exporters.zipkin: every schema-valid section of v2.1..v2.13 loads, plus KrakenD's `ip`/`port`;
bad values are reported with their exact JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError, effective
from gatescope_zipkin import ZipkinConfig

PATH = f"extra_config.{NAMESPACE}.exporters.zipkin"
SCHEMAS = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"
URL = "http://zipkin:9411/api/v2/spans"


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def load(registry, section):
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"zipkin": section}}}}
    return load_config(document, registry).exporter("zipkin")


def problems(registry, section):
    with pytest.raises(ConfigError) as info:
        load(registry, section)
    return list(info.value.problems)


def zipkin_schemas():
    for version_dir in sorted(SCHEMAS.glob("v2.*")):
        schema = json.loads((version_dir / "telemetry" / "opencensus.json").read_text())
        yield version_dir.name, schema["properties"]["exporters"]["properties"]["zipkin"]


SECTIONS = [
    {"collector_url": URL, "service_name": "krakend"},
    {"collector_url": "https://zipkin.example.com:443/api/v2/spans", "service_name": ""},
    {"collector_url": URL, "service_name": "krakend", "@comment": "x", "$c": 1, "_c": [], "#c": {}},
]


def test_every_schema_valid_sample_loads_in_every_version(registry):
    schemas = dict(zipkin_schemas())
    assert len(schemas) == 13
    for section in SECTIONS:
        for version, schema in schemas.items():
            assert jsonschema.validators.validator_for(schema)(schema).is_valid(section), version
        assert isinstance(load(registry, section), ZipkinConfig)


def test_defaults():
    config = ZipkinConfig(collector_url=URL, service_name="k")
    assert effective(config) == {"collector_url": URL, "service_name": "k", "ip": "", "port": 0}


def test_every_key_including_krakends_ip_and_port(registry):
    config = load(registry, {"collector_url": URL, "service_name": "gateway", "ip": "10.0.0.1",
                             "port": 8080})
    assert (config.collector_url, config.service_name, config.ip, config.port) == \
        (URL, "gateway", "10.0.0.1", 8080)
    assert load(registry, {"collector_url": URL, "service_name": "g", "ip": "::1"}).ip == "::1"
    assert load(registry, {"collector_url": URL, "service_name": "g", "ip": "[::1]"}).ip == "::1"
    assert load(registry, {"collector_url": URL, "service_name": "g", "ip": "gw.local"}).ip == \
        "gw.local"


@pytest.mark.parametrize(("section", "expected"), [
    ({"service_name": "k"}, [f"{PATH}.collector_url: is required"]),
    ({"collector_url": URL}, [f"{PATH}.service_name: is required"]),
    ({"collector_url": "zipkin:9411", "service_name": "k"},
     [f'{PATH}.collector_url: expected a URL starting with http:// or https://, got "zipkin:9411"']),
    ({"collector_url": URL, "service_name": ["k"]},
     [f"{PATH}.service_name: expected a string, got a list"]),
    ({"collector_url": URL, "service_name": "k", "ip": 10},
     [f"{PATH}.ip: expected an IP address or host name, got 10"]),
    ({"collector_url": URL, "service_name": "k", "ip": "10.0.0.1:80"},
     [f'{PATH}.ip: expected an IP address or host name, got "10.0.0.1:80"']),
    ({"collector_url": URL, "service_name": "k", "port": 70000},
     [f"{PATH}.port: expected an integer 0..65535, got 70000"]),
    ({"collector_url": URL, "service_name": "k", "port": "8080"},
     [f'{PATH}.port: expected an integer 0..65535, got "8080"']),
    ({"collector_url": URL, "service_name": "k", "colector_url": URL},
     [f'{PATH}.colector_url: unknown key (did you mean "collector_url"?)']),
])
def test_bad_values_name_their_path(registry, section, expected):
    assert problems(registry, section) == expected
