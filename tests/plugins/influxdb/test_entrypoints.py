"""The `influxdb` entry point resolves to InfluxDBExporter (OpenTelemetry-python's entry-point test)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from gatescope.cli import main as gatescope_cli
from gatescope.plugins import default_registry
from gatescope_influxdb import InfluxDBExporter, gatescope_register_exporters


def test_entry_point_loads_the_plugin_module() -> None:
    (ep,) = [e for e in entry_points(group="gatescope") if e.name == "influxdb"]
    assert ep.dist is not None and ep.dist.metadata["Name"] == "gatescope-influxdb"
    assert ep.value == "gatescope_influxdb"
    module = ep.load()
    assert module.gatescope_register_exporters is gatescope_register_exporters


def test_registry_maps_influxdb_to_the_exporter_class() -> None:
    _, registry = default_registry()
    info = registry.exporters["influxdb"]
    assert info.exporter_class is InfluxDBExporter
    assert (info.distribution, info.signals) == ("gatescope-influxdb", ("metrics",))


def test_plugins_command_lists_influxdb(capsys: pytest.CaptureFixture[str]) -> None:
    assert gatescope_cli(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "influxdb", "distribution": "gatescope-influxdb", "version": "0.1.0",
            "signals": ["metrics"], "error": None} in rows
