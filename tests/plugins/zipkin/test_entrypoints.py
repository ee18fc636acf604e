"""The distribution's entry point resolves to the Zipkin exporter (as OpenTelemetry-python checks)."""

from __future__ import annotations

from importlib.metadata import entry_points

import gatescope_zipkin
from gatescope.plugins import default_registry
from gatescope_zipkin import ZipkinExporter


def test_entry_point_resolves_to_the_plugin_module():
    [entry] = [e for e in entry_points(group="gatescope") if e.name == "zipkin"]
    assert entry.value == "gatescope_zipkin"
    assert entry.load() is gatescope_zipkin
    assert entry.dist is not None and entry.dist.name == "gatescope-zipkin"


def test_registry_maps_zipkin_to_the_exporter():
    _, registry = default_registry()
    assert registry.exporters["zipkin"].exporter_class is ZipkinExporter
    assert ZipkinExporter.name == "zipkin"
