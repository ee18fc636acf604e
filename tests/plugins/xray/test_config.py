"""`exporters.xray` parsing: KrakenD's keys and defaults, every schema version, paths in errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from gatescope import ConfigError, ExporterStartError
from gatescope.config import NAMESPACE, load_config
from gatescope.exporter import ExporterContext
from gatescope.plugins import default_registry
from gatescope.settings import REDACTED, effective
from gatescope_xray import XRayConfig, XRayExporter

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "krakend-schema"
PATH = f"extra_config.{NAMESPACE}.exporters.xray"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture(scope="module")
def registry():
    return default_registry()[1]


def document(section):
    return {"version": 3, "extra_config": {NAMESPACE: {"exporters": {"xray": section}}}}


def parse(registry, section) -> XRayConfig:
    config = load_config(document(section), registry).exporter("xray")
    assert isinstance(config, XRayConfig)
    return config


def problems(registry, section) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(document(section), registry)
    return info.value.problems


def xray_schemas():
    schemas = {}
    for version in sorted(REFERENCE.iterdir()):
        path = version / "telemetry" / "opencensus.json"
        if path.exists():
            schema = json.loads(path.read_text())
            schemas[version.name] = _without_ids(
                schema["properties"]["exporters"]["properties"]["xray"])
    return schemas


def _without_ids(node):
    """Drop `$id`s: old versions use fragment ids that current validators refuse as schema."""
    if isinstance(node, dict):
        return {k: _without_ids(v) for k, v in node.items() if k != "$id"}
    return node


SCHEMAS = xray_schemas()


def test_every_schema_version_is_present():
    assert {"v2.1", "v2.13"} <= set(SCHEMAS), f"expected KrakenD schemas under {REFERENCE}"


def test_defaults(registry):
    config = parse(registry, {"region": "eu-west-1", "use_env": True})
    assert config == XRayConfig(region="eu-west-1", use_env=True)
    assert config.version == "KrakenD-opencensus"
    assert config.access_key_id is None and config.secret_access_key is None
    assert config.endpoint_url is None


def test_every_key(registry):
    config = parse(registry, {
        "region": "eu-west-1", "version": "1.2.3", "use_env": False, "access_key_id": KEY_ID,
        "secret_access_key": SECRET, "endpoint_url": "http://127.0.0.1:4566", "@comment": "x",
    })
    assert (config.region, config.version, config.use_env) == ("eu-west-1", "1.2.3", False)
    assert (config.access_key_id, config.secret_access_key) == (KEY_ID, SECRET)
    assert config.endpoint_url == "http://127.0.0.1:4566"


def test_endpoint_url_is_reported_as_a_gatescope_extension(registry):
    config = load_config(document({"region": "x", "use_env": True,
                                   "endpoint_url": "https://xray.internal"}), registry)
    assert "exporters.xray.endpoint_url" in config.effective()["extension_keys"]
    plain = load_config(document({"region": "x", "use_env": True}), registry)
    assert plain.effective()["extension_keys"] == []


@pytest.mark.parametrize("version", sorted(SCHEMAS))
@pytest.mark.parametrize("section", [
    {"region": "eu-west-1", "version": "KrakenD-opencensus", "access_key_id": KEY_ID,
     "secret_access_key": SECRET},
    {"region": "eu-west-1", "version": "v1", "use_env": True},
    {"region": "", "version": "", "use_env": False},  # schema-valid; refused at start instead
    {"region": "us-east-1", "version": "v1", "use_env": True, "access_key_id": KEY_ID},
    {"region": "", "version": "", "access_key_id": "", "secret_access_key": "", "#note": 1},
])
def test_schema_valid_sections_are_accepted(registry, version, section):
    jsonschema.validate(section, SCHEMAS[version])  # the official schema accepts it ...
    parse(registry, section)  # ... and so does gatescope


@pytest.mark.parametrize(("section", "expected"), [
    ({"use_env": True}, [f"{PATH}.region: is required"]),
    ({"region": 3, "use_env": True}, [f'{PATH}.region: expected a string, got 3']),
    ({"region": "x", "use_env": "yes"}, [f'{PATH}.use_env: expected true or false, got "yes"']),
    ({"region": "x", "use_env": True, "version": 2}, [f"{PATH}.version: expected a string, got 2"]),
    ({"region": "x", "access_key_id": 12, "secret_access_key": "s"},
     [f"{PATH}.access_key_id: expected a string, got 12"]),
    ({"region": "x", "use_env": True, "endpoint_url": "127.0.0.1:4566"},
     [f'{PATH}.endpoint_url: expected a URL starting with http:// or https://, got "127.0.0.1:4566"']),
    ({"region": "x", "use_env": True, "regoin": "y"},
     [f'{PATH}.regoin: unknown key (did you mean "region"?)']),
    ("eu-west-1", [f'{PATH}: expected an object, got "eu-west-1"']),
])
def test_bad_values_name_their_json_path(registry, section, expected):
    assert list(problems(registry, section)) == expected


def test_a_wrongly_typed_secret_is_not_echoed(registry):
    found = problems(registry, {"region": "x", "access_key_id": KEY_ID,
                                "secret_access_key": ["not", "a", SECRET]})
    assert found == (f"{PATH}.secret_access_key: expected a string, got a value of the wrong type",)
    assert SECRET not in "\n".join(found)


def test_secrets_stay_out_of_repr_and_effective_config(registry):
    config = parse(registry, {"region": "x", "access_key_id": KEY_ID, "secret_access_key": SECRET})
    assert SECRET not in repr(config) and KEY_ID not in repr(config)
    shown = effective(config)
    assert shown["secret_access_key"] == REDACTED and shown["access_key_id"] == REDACTED
    full = load_config(document({"region": "x", "access_key_id": KEY_ID,
                                 "secret_access_key": SECRET}), registry).effective()
    assert SECRET not in json.dumps(full) and KEY_ID not in json.dumps(full)


def context(**overrides):
    import logging

    from gatescope.metrics import MetricsSnapshot

    values = {"service_name": "svc", "reporting_period": 0, "logger": logging.getLogger("t"),
              "metrics": lambda: MetricsSnapshot(0, ())}
    values.update(overrides)
    return ExporterContext(**values)


@pytest.mark.parametrize("section", [
    {"region": "eu-west-1", "use_env": False},
    {"region": "eu-west-1", "access_key_id": "", "secret_access_key": ""},
    {"region": "eu-west-1", "access_key_id": KEY_ID},
])
def test_unusable_static_credentials_are_refused_at_start(registry, section):
    exporter = XRayExporter(parse(registry, section), context())
    with pytest.raises(ExporterStartError, match="access_key_id and secret_access_key"):
        exporter.start()


def test_empty_region_falls_back_to_the_environment(registry, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/gatescope-test")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = parse(registry, {"region": "", "access_key_id": KEY_ID, "secret_access_key": SECRET})
    with pytest.raises(ExporterStartError, match="no AWS region"):
        XRayExporter(config, context()).start()
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    exporter = XRayExporter(config, context())
    exporter.start()
    assert exporter._client.meta.region_name == "ap-south-1"
    exporter.shutdown(1)


def test_use_env_without_credentials_is_refused_at_start(registry, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/gatescope-test")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/gatescope-test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = parse(registry, {"region": "eu-west-1", "use_env": True})
    with pytest.raises(ExporterStartError, match="no AWS credentials were found"):
        XRayExporter(config, context()).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    exporter = XRayExporter(config, context())
    exporter.start()
    assert exporter._client._request_signer._credentials.access_key == KEY_ID
    exporter.shutdown(1)


def test_reporting_period_is_seconds_with_a_one_second_default():
    config = XRayConfig(region="x", use_env=True)
    assert XRayExporter(config, context(reporting_period=0)).period == 1.0
    assert XRayExporter(config, context(reporting_period=-3)).period == 1.0
    assert XRayExporter(config, context(reporting_period=30)).period == 30.0
    assert XRayExporter.default_period == 1.0
