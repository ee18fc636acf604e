"""The `otlp` entry point resolves to OtlpExporter (OpenTelemetry-python's entry-point test)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from gatescope.cli import main as gatescope_cli
from gatescope.plugins import default_registry
from gatescope_otlp import OtlpExporter, gatescope_register_exporters


def test_entry_point_loads_the_plugin_module() -> None:
    (ep,) = [e for e in entry_points(group="gatescope") if e.name == "otlp"]
    assert ep.dist is not None and ep.dist.metadata["Name"] == "gatescope-otlp"
    module = ep.load()
    assert module.gatescope_register_exporters is gatescope_register_exporters


def test_registry_maps_otlp_to_the_exporter_class() -> None:
    _, registry = default_registry()
    info = registry.exporters["otlp"]
    assert info.exporter_class is OtlpExporter
    assert (info.distribution, info.signals) == ("gatescope-otlp", ("metrics", "traces"))


def test_plugins_command_lists_otlp(capsys: pytest.CaptureFixture[str]) -> None:
    assert gatescope_cli(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name": "otlp", "distribution": "gatescope-otlp", "version": "0.1.0",
            "signals": ["metrics", "traces"], "error": None} in rows
