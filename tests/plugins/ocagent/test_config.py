"""exporters.ocagent: KrakenD's keys and defaults, every problem reported with its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError, describe, effective
from gatescope_ocagent import OcagentConfig

PATH = f"extra_config.{NAMESPACE}.exporters.ocagent"
SCHEMAS = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def section(registry, **keys) -> OcagentConfig:
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"ocagent": keys}}}}
    (exporter,) = load_config(document, registry).exporters
    return exporter.config


def problems(registry, **keys) -> tuple[str, ...]:
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"ocagent": keys}}}}
    with pytest.raises(ConfigError) as info:
        load_config(document, registry)
    return info.value.problems


def test_defaults_are_krakends(registry):
    config = section(registry, address="localhost:55678")
    assert config.address == ("localhost", 55678)
    assert config.target == "localhost:55678"
    assert config.service_name == "KrakenD-Opencensus"
    assert config.headers == {}
    assert config.insecure is False
    assert config.enable_compression is False
    assert config.reconnection == 2.0


def test_every_key(registry):
    config = section(registry, address="[::1]:55678", service_name="gw", insecure=True,
                     enable_compression=True, reconnection="250ms",
                     headers={"X-Api-Key": "s3cret", "trace-bin": "ü"})
    assert config.target == "[::1]:55678"
    assert config.service_name == "gw"
    assert config.insecure and config.enable_compression
    assert config.reconnection == 0.25
    assert config.metadata() == (("trace-bin", "ü".encode()), ("x-api-key", "s3cret"))


def test_empty_service_name_means_krakends_default(registry):
    assert section(registry, address="h:1", service_name="").effective_service_name == \
        "KrakenD-Opencensus"


def test_header_values_are_secrets(registry):
    config = section(registry, address="h:1", headers={"authorization": "Bearer abc"})
    assert "Bearer abc" not in repr(config)
    assert effective(config)["headers"] == {"authorization": "***"}


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, f"{PATH}.address: is required"),
    ({"address": "nohost"}, f'{PATH}.address: expected "host:port", got "nohost"'),
    ({"address": "h:0"}, f'{PATH}.address: expected "host:port", got "h:0"'),
    ({"address": "h:\u00b2"}, f'{PATH}.address: expected "host:port", got "h:\u00b2"'),
    ({"address": "h:\u0668\u0660"}, f'{PATH}.address: expected "host:port", got "h:\u0668\u0660"'),
    ({"address": "h:" + "9" * 5000},  # int() raised its own digit-limit error
     f'{PATH}.address: expected "host:port", got {describe("h:" + "9" * 5000)}'),
    ({"address": 55678}, f'{PATH}.address: expected "host:port", got 55678'),
    ({"address": "h:1", "service_name": 3}, f"{PATH}.service_name: expected a string, got 3"),
    ({"address": "h:1", "insecure": "yes"}, f'{PATH}.insecure: expected true or false, got "yes"'),
    ({"address": "h:1", "enable_compression": 1},
     f"{PATH}.enable_compression: expected true or false, got 1"),
    ({"address": "h:1", "reconnection": "2 seconds"},
     f'{PATH}.reconnection: expected a duration like "2s" or "500ms" (units ns, us, µs, ms, s, '
     f'm, h), got "2 seconds"'),
    ({"address": "h:1", "headers": ["a"]},
     f"{PATH}.headers: expected an object of strings, got a value of the wrong type"),
    ({"address": "h:1", "headers": {"token": 12345}},
     f'{PATH}.headers: expected an object of strings, "token" is not a string'),
    ({"address": "h:1", "endpoint": "x"}, f"{PATH}.endpoint: unknown key"),
])
def test_bad_values_name_their_path(registry, keys, expected):
    found = problems(registry, **keys)
    assert any(p == expected or p.startswith(expected) for p in found), found


def test_wrong_header_type_does_not_echo_the_secret(registry):
    found = problems(registry, address="h:1", headers={"token": 12345})
    assert found and all("12345" not in p for p in found), found


def test_comment_keys_ignored(registry):
    config = section(registry, address="h:1", **{"@comment": "x", "_disabled": True})
    assert config.address == ("h", 1)


def _schema_sections():
    seen = {}
    for schema_file in sorted(SCHEMAS.glob("v*/telemetry/opencensus.json")):
        schema = json.loads(schema_file.read_text())
        ocagent = schema["properties"]["exporters"]["properties"]["ocagent"]
        doc = {key: (prop.get("examples") or [prop.get("default")])[0]
               for key, prop in ocagent["properties"].items()}
        doc["service_name"] = "krakend"  # required by the schema, which gives no example
        doc["reconnection"] = ocagent["properties"]["reconnection"].get("default", "2s")
        seen[schema_file.parts[-3]] = doc
    return seen


def test_schema_examples_of_every_version_are_accepted(registry):
    sections = _schema_sections()
    assert len(sections) >= 10, f"expected KrakenD schemas under {SCHEMAS}"
    for version, keys in sections.items():
        config = section(registry, **keys)
        assert config.target == "localhost:55678", version
        assert config.headers == {"header1": "value1"}, version


@pytest.mark.parametrize(("headers", "expected"), [
    ({"bad name": "v"},
     "headers.bad name: not a valid gRPC metadata name (letters, digits, '-', '_', '.')"),
    ({"grpc-timeout": "1S"}, "headers.grpc-timeout: names starting with grpc- are reserved"),
    ({"x": "line\nbreak"},
     "headers.x: value must be printable ASCII (use a name ending in -bin for other text)"),
])
def test_headers_grpc_refuses_are_accepted_by_config_and_refused_at_start(registry, headers,
                                                                          expected):
    import logging

    from gatescope.exporter import ExporterContext, ExporterStartError
    from gatescope_ocagent import OcagentExporter

    config = section(registry, address="h:1", headers=headers)  # the schema accepts any object
    exporter = OcagentExporter(config, ExporterContext("s", 0, logging.getLogger("t"), list))
    with pytest.raises(ExporterStartError) as info:
        exporter.start()
    assert expected in str(info.value)
    assert "break" not in str(info.value)
