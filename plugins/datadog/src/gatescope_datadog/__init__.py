"""gatescope-datadog: KrakenD's `exporters.datadog` (agent traces, DogStatsD metrics) for gatescope."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_datadog.config import DatadogConfig
from gatescope_datadog.exporter import DatadogExporter

__version__ = "0.1.0"
__all__ = ["DatadogConfig", "DatadogExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(DatadogExporter)
