"""The distribution's entry point resolves to the X-Ray exporter (as OpenTelemetry-python checks)."""

from __future__ import annotations

from importlib.metadata import entry_points

from gatescope.plugins import default_registry
from gatescope_xray import XRayExporter, gatescope_register_exporters


def test_entry_point_resolves_to_the_plugin_module():
    (entry,) = [e for e in entry_points(group="gatescope") if e.name == "xray"]
    assert entry.dist is not None and entry.dist.name == "gatescope-xray"
    module = entry.load()
    assert module.gatescope_register_exporters is gatescope_register_exporters


def test_plugin_registers_the_xray_exporter():
    registered: list[type] = []
    gatescope_register_exporters(registered.append)
    assert registered == [XRayExporter]
    assert XRayExporter.name == "xray"
    assert XRayExporter.signals == frozenset({"traces"})


def test_registry_lists_xray_from_its_distribution():
    registry = default_registry()[1]
    info = registry.exporters["xray"]
    assert info.exporter_class is XRayExporter
    assert info.distribution == "gatescope-xray"
