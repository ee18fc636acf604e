"""gatescope-influxdb: KrakenD's `exporters.influxdb` (metrics to InfluxDB 1.x) for gatescope."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_influxdb.config import InfluxDBConfig
from gatescope_influxdb.exporter import InfluxDBExporter

__version__ = "0.1.0"
__all__ = ["InfluxDBConfig", "InfluxDBExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(InfluxDBExporter)
