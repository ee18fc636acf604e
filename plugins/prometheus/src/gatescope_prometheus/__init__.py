"""gatescope-prometheus: KrakenD's Prometheus exporter (same names, labels and buckets)."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_prometheus.collector import SnapshotCollector, build_registry, go_float, sanitize
from gatescope_prometheus.config import PrometheusConfig
from gatescope_prometheus.exporter import PrometheusExporter

__all__ = ["PrometheusConfig", "PrometheusExporter", "SnapshotCollector", "build_registry",
           "go_float", "sanitize"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(PrometheusExporter)
