"""The `gatescope` entry point named ocagent resolves to this plugin's exporter."""

from __future__ import annotations

from importlib.metadata import entry_points

import gatescope_ocagent
from gatescope.plugins import default_registry
from gatescope_ocagent import OcagentConfig, OcagentExporter


def test_entry_point_loads_the_plugin_module():
    (entry,) = [e for e in entry_points(group="gatescope") if e.name == "ocagent"]
    assert entry.load() is gatescope_ocagent
    registered: list[type] = []
    gatescope_ocagent.gatescope_register_exporters(registered.append)
    assert registered == [OcagentExporter]


def test_registry_finds_the_exporter():
    registry = default_registry()[1]
    info = registry.exporters["ocagent"]
    assert info.exporter_class is OcagentExporter
    assert info.distribution == "gatescope-ocagent"
    assert registry.config_class("ocagent") is OcagentConfig
    assert OcagentExporter.signals == frozenset({"traces", "metrics"})
