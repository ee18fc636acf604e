"""The `gatescope` entry point named prometheus resolves to this plugin's exporter."""

from importlib.metadata import entry_points

from gatescope.plugins import default_registry
from gatescope_prometheus import PrometheusConfig, PrometheusExporter


def test_entry_point_resolves_to_the_exporter() -> None:
    (point,) = [ep for ep in entry_points(group="gatescope") if ep.name == "prometheus"]
    module = point.load()
    assert module.PrometheusExporter is PrometheusExporter
    assert point.dist is not None and point.dist.name == "gatescope-prometheus"


def test_registry_knows_prometheus() -> None:
    registry = default_registry()[1]
    info = registry.exporters["prometheus"]
    assert info.exporter_class is PrometheusExporter
    assert PrometheusExporter.config_class is PrometheusConfig
    assert PrometheusExporter.pushes_metrics is False
