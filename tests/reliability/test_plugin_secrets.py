"""Every real plugin's secret stays out of `gatescope check` (human and --json), config errors,
repr() of config objects, and everything a failing export run logs or prints."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gatescope import pipeline
from gatescope.cli import main as cli_main
from gatescope.config import NAMESPACE, load_config
from gatescope.plugins import default_registry
from gatescope.settings import ConfigError
from gatescope.spans import KIND_SERVER

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: reach the sibling helper module
from faulty_receiver import ERROR_500, Receiver

SECRET = "Zq9S3cr3tHunter2xK"  # URL-, header- and gRPC-metadata-safe, unlikely anywhere else


def influxdb(url: str, host_port: str) -> dict[str, Any]:
    return {"address": url.rsplit("/api", 1)[0], "db": "metrics", "username": "gw",
            "password": SECRET}


def xray(url: str, host_port: str) -> dict[str, Any]:
    return {"region": "eu-west-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET,
            "endpoint_url": url.rsplit("/api", 1)[0]}


def ocagent(url: str, host_port: str) -> dict[str, Any]:
    return {"address": host_port, "insecure": True, "headers": {"x-tenant": SECRET}}


def otlp(url: str, host_port: str) -> dict[str, Any]:
    return {"endpoint": url.rsplit("/api", 1)[0], "headers": {"x-tenant": SECRET}}


def jaeger(url: str, host_port: str) -> dict[str, Any]:
    return {"service_name": "gw", "endpoint": url.replace("://", f"://gw:{SECRET}@")}


def zipkin(url: str, host_port: str) -> dict[str, Any]:
    return {"service_name": "gw", "collector_url": url.replace("://", f"://gw:{SECRET}@")}


SECTIONS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "influxdb": influxdb, "xray": xray, "ocagent": ocagent, "otlp": otlp, "jaeger": jaeger,
    "zipkin": zipkin,
}


def document(name: str, section: dict[str, Any]) -> dict[str, Any]:
    return {"version": 3, "extra_config": {NAMESPACE: {
        "sample_rate": 100, "reporting_period": 1, "export_timeout": "500ms",
        "exporters": {name: section}}}}


@pytest.fixture
def failing_receiver() -> Iterator[Receiver]:
    receiver = Receiver(ERROR_500)  # every HTTP export is answered 500; gRPC cannot speak to it
    yield receiver
    receiver.close()


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_secret_never_leaves_the_process(name: str, failing_receiver: Receiver, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, registry = default_registry()
    if name not in registry.exporters:
        pytest.fail(f"plugin gatescope-{name} is not installed (make test installs every plugin)")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(pipeline, "RETRY_DELAYS", (0.01,))
    section = SECTIONS[name](failing_receiver.url, f"127.0.0.1:{failing_receiver.port}")
    seen: list[str] = []

    # `gatescope check`, human and --json, on the valid file and on one with another key wrong.
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(document(name, section)))
    assert cli_main(["check", str(path)]) == 0
    assert cli_main(["check", str(path), "--json"]) == 0
    path.write_text(json.dumps(document(name, {**section, "no_such_key": SECRET[:3]})))
    assert cli_main(["check", str(path)]) == 1
    assert cli_main(["check", str(path), "--json"]) == 1

    # ConfigError messages and repr() of every config object.
    with pytest.raises(ConfigError) as error:
        load_config(document(name, {**section, "no_such_key": 1}), registry)
    seen.append(str(error.value))
    seen.append(repr(error.value))
    for key, value in section.items():  # a URL carrying credentials that is itself invalid
        if isinstance(value, str) and SECRET in value and "@" in value:
            broken = value.replace(f":{failing_receiver.port}", ":99999")
            with pytest.raises(ConfigError) as error:
                load_config(document(name, {**section, key: broken}), registry)
            assert f"{name}.{key}" in str(error.value)
            seen.append(str(error.value))
    config = load_config(document(name, section), registry)
    seen += [repr(config), repr(config.exporter(name)), str(config.exporter(name)),
             json.dumps(config.effective())]

    # A failing export run: spans and a metrics push against a receiver that answers 500.
    from gatescope.runtime import Telemetry

    telemetry = Telemetry(config, registry=registry, plugin_manager=default_registry()[0])
    try:
        telemetry.start()
        for i in range(5):
            span = telemetry.tracer.start_root(f"/secret-run/{i}", KIND_SERVER, None)
            assert span is not None
            span.end()  # type: ignore[union-attr]
        telemetry.kit.server.record("gw", "/p", "GET", "200", 1, 2, 3.0)
        telemetry.flush(5)
    finally:
        telemetry.shutdown(5)
    assert failing_receiver.rejected > 0 or name == "ocagent", "the export run did not fail"
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    seen += [formatter.format(record) for record in caplog.records]  # tracebacks included
    out = capsys.readouterr()
    seen += [out.out, out.err]
    leaks = [text for text in seen if SECRET in text]
    assert not leaks, leaks[0][:2000]
    assert any("***" in text for text in seen), "the secret key should show up redacted"
