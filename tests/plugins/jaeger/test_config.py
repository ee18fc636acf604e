"""exporters.jaeger: every schema-valid section of v2.1..v2.13 loads with KrakenD's semantics;
bad values are reported with their exact JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError, describe, effective
from gatescope_jaeger import JaegerConfig

PATH = f"extra_config.{NAMESPACE}.exporters.jaeger"
SCHEMAS = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"
URL = "http://jaeger:14268/api/traces"


def not_an_agent(value: str) -> list[str]:
    return [f'{PATH}.agent_endpoint: expected "host:port" of a Jaeger agent (e.g. "jaeger:6831"), '
            f'got "{value}"']


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def load(registry, section):
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"jaeger": section}}}}
    return load_config(document, registry).exporter("jaeger")


def problems(registry, section):
    with pytest.raises(ConfigError) as info:
        load(registry, section)
    return list(info.value.problems)


def jaeger_schemas():
    for version_dir in sorted(SCHEMAS.glob("v2.*")):
        schema = json.loads((version_dir / "telemetry" / "opencensus.json").read_text())
        yield version_dir.name, schema["properties"]["exporters"]["properties"]["jaeger"]


SECTIONS = [
    {"endpoint": URL, "service_name": "krakend"},
    {"endpoint": URL, "service_name": "krakend", "buffer_max_count": 500},
    {"endpoint": URL, "service_name": "krakend", "buffer_max_count": 0},
    {"endpoint": "https://jaeger.example.com/api/traces", "service_name": "", "@comment": "x"},
    {"agent_endpoint": "jaeger:6831", "service_name": "krakend"},
    {"agent_endpoint": "127.0.0.1:6831", "service_name": "krakend", "buffer_max_count": -1},
    {"agent_endpoint": "[::1]:6831", "service_name": "krakend", "$comment": "ipv6",
     "_note": 1, "#x": None},
]


def test_every_sample_is_schema_valid_somewhere_and_loads(registry):
    schemas = dict(jaeger_schemas())
    assert len(schemas) == 13
    for section in SECTIONS:
        valid_in = [v for v, s in schemas.items()
                    if jsonschema.validators.validator_for(s)(s).is_valid(section)]
        assert valid_in, section
        config = load(registry, section)
        assert isinstance(config, JaegerConfig)


def test_v21_requires_endpoint_and_v22_plus_accept_exactly_one(registry):
    schemas = dict(jaeger_schemas())
    agent_only = {"agent_endpoint": "jaeger:6831", "service_name": "k"}
    check = {v: jsonschema.validators.validator_for(s)(s).is_valid(agent_only)
             for v, s in schemas.items()}
    assert check.pop("v2.1") is False and all(check.values())
    assert load(registry, agent_only).agent_endpoint == "jaeger:6831"


def test_defaults():
    config = JaegerConfig(service_name="k", endpoint=URL)
    assert effective(config) == {"service_name": "k", "endpoint": URL, "agent_endpoint": "",
                                 "buffer_max_count": 0}


def test_every_key(registry):
    config = load(registry, {"endpoint": URL, "agent_endpoint": "agent:6831",
                             "service_name": "gateway", "buffer_max_count": 1000})
    assert (config.endpoint, config.agent_endpoint, config.service_name,
            config.buffer_max_count) == (URL, "agent:6831", "gateway", 1000)
    assert config.uses_collector  # KrakenD: the collector wins when both are given


def test_empty_endpoint_counts_as_absent(registry):
    config = load(registry, {"endpoint": "", "agent_endpoint": "jaeger:6831", "service_name": "k"})
    assert not config.uses_collector


@pytest.mark.parametrize(("section", "expected"), [
    ({"service_name": "k"},
     [f'{PATH}: needs "endpoint" (collector URL) or "agent_endpoint" (agent host:port)']),
    ({"endpoint": "", "service_name": "k"},
     [f'{PATH}: needs "endpoint" (collector URL) or "agent_endpoint" (agent host:port)']),
    ({"endpoint": URL},
     [f"{PATH}.service_name: is required"]),
    ({"endpoint": 5, "service_name": "k"},
     [f"{PATH}.endpoint: expected a URL starting with http:// or https://, got 5"]),
    ({"endpoint": "udp://jaeger:6831", "service_name": "k"},
     [f'{PATH}.endpoint: expected a URL starting with http:// or https://, got "udp://jaeger:6831"']),
    ({"agent_endpoint": "http://192.168.99.100:14268/api/traces", "service_name": "k"},
     not_an_agent("http://192.168.99.100:14268/api/traces")),
    ({"agent_endpoint": "jaeger", "service_name": "k"}, not_an_agent("jaeger")),
    ({"agent_endpoint": "jaeger:99999", "service_name": "k"}, not_an_agent("jaeger:99999")),
    ({"agent_endpoint": "jaeger:\u00b2", "service_name": "k"}, not_an_agent("jaeger:\u00b2")),  # int() fails
    ({"agent_endpoint": "jaeger:\u0666\u0668\u0663\u0661", "service_name": "k"},  # Arabic-Indic
     not_an_agent("jaeger:\u0666\u0668\u0663\u0661")),
    ({"agent_endpoint": "jaeger:" + "9" * 5000, "service_name": "k"},  # past int()'s digit limit
     [f'{PATH}.agent_endpoint: expected "host:port" of a Jaeger agent (e.g. "jaeger:6831"), '
      f'got {describe("jaeger:" + "9" * 5000)}']),
    ({"endpoint": URL, "service_name": 7},
     [f"{PATH}.service_name: expected a string, got 7"]),
    ({"endpoint": URL, "service_name": "k", "buffer_max_count": "100"},
     [f'{PATH}.buffer_max_count: expected an integer, got "100"']),
    ({"endpoint": URL, "service_name": "k", "buffer_max_count": 1.5},
     [f"{PATH}.buffer_max_count: expected an integer, got 1.5"]),
    ({"endpont": URL, "service_name": "k"},
     [f'{PATH}.endpont: unknown key (did you mean "endpoint"?)']),
])
def test_bad_values_name_their_path(registry, section, expected):
    assert problems(registry, section) == expected


def test_buffer_max_count_bounds_what_the_exporter_may_hold(registry):
    from gatescope_jaeger import JaegerExporter

    assert JaegerExporter(load(registry, {"endpoint": URL, "service_name": "k",
                                          "buffer_max_count": 50}), _context()).max_pending_spans == 50
    assert JaegerExporter(load(registry, {"endpoint": URL, "service_name": "k"}),
                          _context()).max_pending_spans is None


def _context():
    import logging

    from gatescope import ExporterContext

    return ExporterContext("k", 0, logging.getLogger("t"), lambda: None)


def test_buffer_max_count_is_enforced_by_the_pipeline(gatescope_plugins):
    from gatescope.spans import SpanRecord
    from gatescope.testing import krakend_config

    telemetry = gatescope_plugins.telemetry(krakend_config(
        {"jaeger": {"endpoint": URL, "service_name": "k", "buffer_max_count": 5}}), start=False)
    [worker] = [w for w in telemetry.pipeline.workers if w.name == "jaeger"]
    spans = [SpanRecord(f"s{i}", "1" * 32, f"{i + 1:016x}", None, 0, 1, 2, {}) for i in range(8)]
    worker.offer(spans)  # not started: nothing drains, so the exporter's buffer fills
    assert (worker.pending, worker.failed) == (5, 3)
    worker.offer(spans[:1])
    assert (worker.pending, worker.failed) == (5, 4)
