"""The `datadog` entry point resolves to DatadogExporter (OpenTelemetry-python's entry-point test)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from gatescope.cli import main as gatescope_cli
from gatescope.plugins import default_registry
from gatescope_datadog import DatadogExporter, gatescope_register_exporters


def test_entry_point_loads_the_plugin_module() -> None:
    (ep,) = [e for e in entry_points(group="gatescope") if e.name == "datadog"]
    assert ep.dist is not None and ep.dist.metadata["Name"] == "gatescope-datadog"
    assert ep.value == "gatescope_datadog"
    module = ep.load()
    assert module.gatescope_register_exporters is gatescope_register_exporters


def test_registry_maps_datadog_to_the_exporter_class() -> None:
    _, registry = default_registry()
    info = registry.exporters["datadog"]
    assert info.exporter_class is DatadogExporter
    assert (info.distribution, info.signals) == ("gatescope-datadog", ("metrics", "traces"))


def test_plugins_command_lists_datadog(capsys: pytest.CaptureFixture[str]) -> None:
    assert gatescope_cli(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "datadog", "distribution": "gatescope-datadog", "version": "0.1.0",
            "signals": ["metrics", "traces"], "error": None} in rows
