"""exporters.otlp: defaults, every key, errors with their JSON paths, secrets redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from gatescope import ConfigError, load_config
from gatescope.cli import main as gatescope_cli
from gatescope.exporter import ExporterContext
from gatescope.metrics import MetricsSnapshot
from gatescope.plugins import default_registry
from gatescope.testing import krakend_config
from gatescope_otlp import OtlpConfig, OtlpExporter
from gatescope_otlp.exporter import resource_attributes
from gatescope_otlp.grpc_transport import GrpcTransport
from gatescope_otlp.http_transport import HttpTransport

SECTION = "extra_config.telemetry/opencensus.exporters.otlp"


def load(section: Any, **service: Any) -> OtlpConfig:
    _, registry = default_registry()
    parsed = load_config(krakend_config({"otlp": section}, **service), registry).exporter("otlp")
    assert isinstance(parsed, OtlpConfig)
    return parsed


def problems(section: Any) -> tuple[str, ...]:
    _, registry = default_registry()
    with pytest.raises(ConfigError) as caught:
        load_config(krakend_config({"otlp": section}), registry)
    return caught.value.problems


def context(service: str = "gateway", export_timeout: float = 10.0) -> ExporterContext:
    return ExporterContext(service, 0, logging.getLogger("test.otlp"),
                           lambda: MetricsSnapshot(0, ()), export_timeout=export_timeout)


def test_defaults() -> None:
    config = load({})
    assert config == OtlpConfig(endpoint=None, protocol="http/protobuf", headers={}, timeout=None,
                                compression="none", insecure=False, service_name=None,
                                resource_attributes={}, traces=True, metrics=True)
    assert config.url == "http://localhost:4318"
    assert load({"protocol": "grpc"}).url == "http://localhost:4317"
    exporter = OtlpExporter(config, context(export_timeout=7.5))
    assert exporter.timeout == 7.5  # the service's export_timeout
    assert isinstance(exporter.transport, HttpTransport)
    assert (exporter.transport.host, exporter.transport.port) == ("localhost", 4318)


def test_every_key() -> None:
    config = load({
        "endpoint": "https://collector.example:4317", "protocol": "grpc",
        "headers": {"Authorization": "Bearer s3cret", "x-team": "edge"}, "timeout": "2500ms",
        "compression": "gzip", "service_name": "edge-gw",
        "resource_attributes": {"deployment.environment": "prod", "service.name": "ignored"},
        "traces": True, "metrics": False, "_note": "comment keys are ignored",
    })
    assert config.timeout == 2.5 and config.compression == "gzip" and not config.metrics
    exporter = OtlpExporter(config, context())
    assert exporter.signals == frozenset({"traces"})
    transport = exporter.transport
    assert isinstance(transport, GrpcTransport)
    assert (transport.target, transport.tls, transport.timeout) == ("collector.example:4317", True, 2.5)
    assert transport.metadata == (("authorization", "Bearer s3cret"), ("x-team", "edge"))
    assert resource_attributes(config, context())["service.name"] == "edge-gw"
    assert resource_attributes(config, context())["deployment.environment"] == "prod"


def test_service_name_falls_back_to_resource_attributes_then_the_config_name() -> None:
    from_attributes = load({"resource_attributes": {"service.name": "from-attrs"}})
    assert resource_attributes(from_attributes, context())["service.name"] == "from-attrs"
    assert resource_attributes(load({}), context("krakend-name"))["service.name"] == "krakend-name"


@pytest.mark.parametrize(("section", "target", "tls"), [
    ({"protocol": "grpc", "endpoint": "collector:4317"}, "collector:4317", True),
    ({"protocol": "grpc", "endpoint": "collector:4317", "insecure": True}, "collector:4317", False),
    ({"protocol": "grpc", "endpoint": "http://collector"}, "collector:4317", False),
    ({"protocol": "grpc", "endpoint": "http://[::1]:9000"}, "[::1]:9000", False),
])
def test_grpc_targets_and_tls(section: dict[str, Any], target: str, tls: bool) -> None:
    transport = OtlpExporter(load(section), context()).transport
    assert isinstance(transport, GrpcTransport)
    assert (transport.target, transport.tls) == (target, tls)


def test_http_endpoint_path_prefix_is_kept() -> None:
    transport = OtlpExporter(load({"endpoint": "https://otlp.example/api/v2/otlp/",
                                   "compression": "gzip"}), context()).transport
    assert isinstance(transport, HttpTransport)
    assert (transport.https, transport.port, transport.prefix) == (True, 443, "/api/v2/otlp")
    assert transport.headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize(("section", "expected"), [
    ({"endpoint": "ftp://x"},
     f'{SECTION}.endpoint: expected a URL like "http://collector:4318" or, for grpc, "host:port", '
     'got "ftp://x"'),
    ({"endpoint": "collector:4318"},
     f'{SECTION}.endpoint: http/protobuf needs a URL ("http://..." or "https://...")'),
    ({"protocol": "http/json"},
     f'{SECTION}.protocol: expected one of "http/protobuf", "grpc", got "http/json"'),
    ({"headers": ["a"]}, f"{SECTION}.headers: expected an object of strings, got a value of "
                         "the wrong type"),
    ({"headers": {"bad name": "x"}}, f'{SECTION}.headers: "bad name" is not a valid header name'),
    ({"headers": {"x-a": "v\r\nInjected: 1"}}, f"{SECTION}.headers.x-a: must not contain line breaks"),
    ({"timeout": 5}, f'{SECTION}.timeout: expected a duration like "2s" or "500ms" (units ns, us, '
                     'µs, ms, s, m, h), got 5'),
    ({"compression": "zstd"}, f'{SECTION}.compression: expected one of "gzip", "none", got "zstd"'),
    ({"insecure": True}, f'{SECTION}.insecure: applies to "protocol": "grpc" only'),
    ({"protocol": "grpc", "endpoint": "https://c:4317", "insecure": True},
     f"{SECTION}.insecure: the endpoint's scheme already decides (http:// plaintext, https:// "
     "TLS); use it only with host:port"),
    ({"service_name": ""}, f"{SECTION}.service_name: expected a non-empty string"),
    ({"resource_attributes": {"k": 1}},
     f'{SECTION}.resource_attributes: expected an object of strings, "k" is not a string (got 1)'),
    ({"traces": False, "metrics": False},
     f'{SECTION}: nothing to export: "traces" and "metrics" are both false'),
    ({"endpiont": "http://x"}, f'{SECTION}.endpiont: unknown key (did you mean "endpoint"?)'),
])
def test_bad_values_name_their_path(section: dict[str, Any], expected: str) -> None:
    assert problems(section) == (expected,)


def test_check_redacts_header_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(krakend_config({"otlp": {"headers": {"api-key": "s3cret"}}})))
    assert gatescope_cli(["check", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert json.loads(out)["config"]["exporters"]["otlp"]["headers"] == {"api-key": "***"}
    assert "s3cret" not in repr(load({"headers": {"api-key": "s3cret"}}))
