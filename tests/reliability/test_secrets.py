"""Secrets never appear in config errors, `gatescope check` output, repr() or logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import attrs
import pytest
from gatescope import TRACES, BaseExporter, hookimpl
from gatescope.cli import main as cli_main
from gatescope.config import NAMESPACE, load_config
from gatescope.settings import ConfigError, integer, setting, string, string_map
from gatescope.spans import SpanRecord

SECRET = "s3cr3t-Hunter2-value"


@attrs.frozen
class VaultConfig:
    url: str = setting(string(), required=True)
    password: str = setting(string(), default="", secret=True)
    headers: Mapping[str, str] = setting(string_map, factory=dict)
    retries: int = setting(integer(0, 5), default=1)


class VaultExporter(BaseExporter):
    name = "vault"
    config_class = VaultConfig
    signals = frozenset({TRACES})

    def export_spans(self, spans):
        raise RuntimeError("receiver rejected the batch")


class Plugin:
    @hookimpl
    def gatescope_register_exporters(self, register):
        register(VaultExporter)


def document(**section):
    return {"extra_config": {NAMESPACE: {"exporters": {"vault": section}}}}


@pytest.fixture
def harness(gatescope_plugins):
    gatescope_plugins.register(Plugin())
    return gatescope_plugins


def test_secret_absent_from_repr_errors_and_effective_config(harness):
    registry = harness.registry()
    config = load_config(document(url="http://x", password=SECRET, headers={"api_key": SECRET}), registry)
    section = config.exporter("vault")
    assert SECRET not in repr(section) and SECRET not in repr(config)
    effective = json.dumps(config.effective())
    assert SECRET not in effective and "***" in effective

    with pytest.raises(ConfigError) as info:  # a failing run: other keys invalid, secret present
        load_config(document(url=5, password=SECRET, headers={"token": SECRET}, retries=99), registry)
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError) as info:  # the secret itself of the wrong type
        load_config(document(url="http://x", password=[SECRET]), registry)
    assert SECRET not in str(info.value)
    assert "password: expected a string, got a value of the wrong type" in str(info.value)
    with pytest.raises(ConfigError) as info:  # a secret map with a non-string value
        load_config(document(url="http://x", password=SECRET, headers={"x": 12345}), registry)
    assert "12345" in str(info.value)  # not a secret setting: the value helps the user


def test_secret_absent_from_export_failure_logs(harness, caplog):
    caplog.set_level(logging.DEBUG)
    telemetry = harness.telemetry(document(url="http://x", password=SECRET, headers={"authorization": SECRET}))
    telemetry.pipeline.submit(SpanRecord("s", "1" * 32, "2" * 16, None, 1, 1, 2, {}))
    assert telemetry.flush(5) is False
    assert any("receiver rejected the batch" in r.getMessage() for r in caplog.records)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_check_output_redacts(harness, tmp_path, capsys, monkeypatch):
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(document(url="http://x", password=SECRET, headers={"x-token": SECRET})))
    monkeypatch.setattr("gatescope.cli.default_registry", lambda: (harness.pm, harness.registry()))
    assert cli_main(["check", str(path), "--json"]) == 0
    assert cli_main(["check", str(path)]) == 0
    path.write_text(json.dumps(document(url=1, password=SECRET)))
    assert cli_main(["check", str(path), "--json"]) == 1
    out = capsys.readouterr()
    assert SECRET not in out.out and SECRET not in out.err
    assert "***" in out.out
