"""gatescope-zipkin: KrakenD's `exporters.zipkin`, as JSON v2 spans the Zipkin spec accepts."""

from __future__ import annotations

from collections.abc import Callable

from gatescope import hookimpl

from gatescope_zipkin.config import ZipkinConfig
from gatescope_zipkin.exporter import ZipkinExporter

__all__ = ["ZipkinConfig", "ZipkinExporter", "gatescope_register_exporters"]


@hookimpl
def gatescope_register_exporters(register: Callable[[type], None]) -> None:
    register(ZipkinExporter)
