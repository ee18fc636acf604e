"""gatescope-otlp: traces and metrics to OpenTelemetry collectors over OTLP/HTTP or OTLP/gRPC."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_otlp.config import OtlpConfig
from gatescope_otlp.exporter import OtlpExporter

__version__ = "0.1.0"
__all__ = ["OtlpConfig", "OtlpExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(OtlpExporter)
