"""gatescope-jaeger: KrakenD's `exporters.jaeger`, with a wire format Jaeger actually accepts."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_jaeger.config import JaegerConfig
from gatescope_jaeger.exporter import JaegerExporter

__all__ = ["JaegerConfig", "JaegerExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(JaegerExporter)
