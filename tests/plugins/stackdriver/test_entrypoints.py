"""The `gatescope` entry point named stackdriver resolves to this plugin's exporter."""

from __future__ import annotations

from importlib.metadata import entry_points

import gatescope_stackdriver
from gatescope.plugins import default_registry
from gatescope_stackdriver import StackdriverConfig, StackdriverExporter


def test_entry_point_loads_the_plugin_module():
    (entry,) = [e for e in entry_points(group="gatescope") if e.name == "stackdriver"]
    assert entry.load() is gatescope_stackdriver
    registered: list[type] = []
    gatescope_stackdriver.gatescope_register_exporters(registered.append)
    assert registered == [StackdriverExporter]


def test_registry_finds_the_exporter():
    registry = default_registry()[1]
    info = registry.exporters["stackdriver"]
    assert info.exporter_class is StackdriverExporter
    assert info.distribution == "gatescope-stackdriver"
    assert registry.config_class("stackdriver") is StackdriverConfig
    assert StackdriverExporter.signals == frozenset({"traces", "metrics"})
