"""The distribution's entry point resolves to the Jaeger exporter (as OpenTelemetry-python checks)."""

from __future__ import annotations

from importlib.metadata import entry_points

import gatescope_jaeger
from gatescope.plugins import default_registry
from gatescope_jaeger import JaegerExporter


def test_entry_point_resolves_to_the_plugin_module():
    [entry] = [e for e in entry_points(group="gatescope") if e.name == "jaeger"]
    assert entry.value == "gatescope_jaeger"
    assert entry.load() is gatescope_jaeger
    assert entry.dist is not None and entry.dist.name == "gatescope-jaeger"


def test_registry_maps_jaeger_to_the_exporter():
    _, registry = default_registry()
    assert registry.exporters["jaeger"].exporter_class is JaegerExporter
    assert JaegerExporter.name == "jaeger"
