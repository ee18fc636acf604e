"""exporters.stackdriver: KrakenD's keys and defaults, every problem reported with its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError
from gatescope_stackdriver import StackdriverConfig
from gatescope_stackdriver.metrics import metric_type, sanitize_label

PATH = f"extra_config.{NAMESPACE}.exporters.stackdriver"
SCHEMAS = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def load(registry, keys):
    document = {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"stackdriver": keys}}}}
    return load_config(document, registry)


def section(registry, **keys) -> StackdriverConfig:
    (exporter,) = load(registry, keys).exporters
    return exporter.config


def problems(registry, **keys) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(registry, keys)
    return info.value.problems


def test_defaults_are_krakends(registry):
    config = section(registry)
    assert config.project_id == ""
    assert config.metric_prefix == "krakend"
    assert config.default_labels == {}
    assert config.endpoint is None and config.target is None


def test_every_key(registry):
    config = section(registry, project_id="my-proj", metric_prefix="gw",
                     default_labels={"env": "production"}, endpoint="127.0.0.1:8085")
    assert config.project_id == "my-proj"
    assert config.effective_metric_prefix == "gw"
    assert config.default_labels == {"env": "production"}
    assert config.target == "127.0.0.1:8085"


def test_empty_prefix_means_krakends_default(registry):
    assert section(registry, metric_prefix="").effective_metric_prefix == "krakend"


def test_empty_label_names_are_accepted_and_left_out(registry):
    config = section(registry, default_labels={"": "x", "env": "prod"})
    assert config.labels == {"env": "prod"}


def test_endpoint_is_a_reported_extension(registry):
    config = load(registry, {"project_id": "p", "endpoint": "[::1]:8085"})
    assert config.exporters[0].config.target == "[::1]:8085"
    assert "endpoint" in json.dumps(config.effective())


@pytest.mark.parametrize(("keys", "expected"), [
    ({"project_id": 7}, f"{PATH}.project_id: expected a string, got 7"),
    ({"metric_prefix": ["x"]}, f"{PATH}.metric_prefix: expected a string, got a list"),
    ({"default_labels": "env=prod"},
     f'{PATH}.default_labels: expected an object of strings, got "env=prod"'),
    ({"default_labels": {"env": 1}},
     f'{PATH}.default_labels: expected an object of strings, "env" is not a string (got 1)'),
    ({"endpoint": "localhost"}, f'{PATH}.endpoint: expected "host:port", got "localhost"'),
    ({"metrics_prefix": "krakend"},
     f'{PATH}.metrics_prefix: unknown key (did you mean "metric_prefix"?)'),
])
def test_bad_values_name_their_path(registry, keys, expected):
    found = problems(registry, **keys)
    assert expected in found, found


def test_schema_examples_of_every_version_are_accepted(registry):
    versions = sorted(SCHEMAS.glob("v*/telemetry/opencensus.json"))
    assert len(versions) >= 10, f"expected KrakenD schemas under {SCHEMAS}"
    for schema_file in versions:
        schema = json.loads(schema_file.read_text())
        properties = schema["properties"]["exporters"]["properties"]["stackdriver"]["properties"]
        keys = {key: (prop.get("examples") or [prop.get("default")])[0]
                for key, prop in properties.items()}
        keys["metric_prefix"] = "krakend"  # the schema gives no example
        config = section(registry, **keys)
        assert config.project_id == "ID" and config.default_labels == {"env": "production"}


def test_label_keys_and_metric_types_follow_the_go_exporter():
    assert sanitize_label("http.method") == "http_method"
    assert sanitize_label("1st") == "key_1st"
    assert sanitize_label("_x") == "key_x"
    assert len(sanitize_label("a" * 150)) == 100
    assert metric_type("opencensus.io/http/server/latency") == \
        "custom.googleapis.com/opencensus/opencensus.io/http/server/latency"
